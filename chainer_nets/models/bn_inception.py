r"""Batch Normalization (Ioffe & Szegedy, 2015; arXiv 1502.03167): the BN-Inception network.

The paper's question: can the shift in each layer's input distribution during training
("internal covariate shift") be removed inside the network, so that it trains faster with
larger learning rates? Its answer normalises every activation over the mini-batch
(Algorithm 1) and restores the representation with a learned scale and shift,

.. math::  \hat x = \frac{x - \mu_\mathcal{B}}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}, \qquad
           y = \gamma \hat x + \beta,

with :math:`\mu_\mathcal{B}, \sigma^2_\mathcal{B}` the statistics of the mini-batch during
training and moving averages of them at test time (Algorithm 2). Batch normalization sits
between every convolution and its ReLU (:class:`ConvBN`; the convolution's bias is dropped,
:math:`\beta` replaces it).

The network (Section 4.1 and the appendix table, "Figure 5") modifies GoogLeNet: each 5x5
convolution becomes two stacked 3x3 ("double 3x3"), the 28x28 stage gets a third module, the
pooling branch averages or takes the maximum depending on the module, and the two
down-sampling steps happen inside modules 3c and 4e, which have no 1x1 branch, stride-2 last
convolutions and a max-pooling branch passed through without a projection. There are no
separate max-pool layers between the stages and no LRN.

The first convolution is **separable** (:class:`SeparableConvBN`): a depthwise 7x7/2
convolution gives each of the 3 input channels its own 8 filters (depth multiplier 8, 24
maps), and a 1x1 convolution mixes the 24 maps into 64, followed by BN and ReLU. It has
:math:`7^2 \cdot 3 \cdot 8 + 24 \cdot 64 = 2{,}712` weights where a full 7x7 convolution has
:math:`7^2 \cdot 3 \cdot 64 = 9{,}408`, and about a third of its multiply-adds.

CIFAR-10 adaptation (:data:`CIFAR_STEM`, the one place it differs): the stem keeps its
convolutions (the first one still separable, depth multiplier 8) but not its down-sampling
(3x3 stride-1 first convolution, no max-pools), so module 3a sees 32x32 maps (28x28 on
ImageNet) and the last stage 8x8 (7x7).

What was checked, against which source:

* the paper, arXiv 1502.03167 (https://arxiv.org/abs/1502.03167), appendix: the table of
  Figure 5 (the widths of :data:`FIGURE5`, the output widths of :data:`TABLE_OUT`, the
  pooling kind of every module, the stride-2 modules 3c and 4e), the list of changes from
  GoogLeNet under it, and its last item: the first convolutional layer is a separable
  convolution with depth multiplier 8.
* TensorFlow's reference definition of this network, which cites the paper
  (https://github.com/tensorflow/models, ``research/slim/nets/inception_v2.py``):
  ``Conv2d_1a_7x7`` is a separable 7x7/2 convolution with a depthwise multiplier of
  ``min(64 // 3, 8) = 8``, no normalisation between its depthwise and 1x1 parts, BN and ReLU
  after them. Its 28x28 and 14x14 widths are the table's except the pooling projections of
  4c and 4d (96 there, 128 in the table, whose printed output widths 608 need 128); the table
  is followed here.
* The parameter count: the paper's text gives no per-layer count to compare with; the
  separable first layer removes 6,696 weights from the ImageNet configuration (11,285,224 ->
  11,278,528 parameters in all) and, at 3x3 on CIFAR-10, adds 24 (1,752 weights instead of
  1,728); the tests pin both counts.
"""

from __future__ import annotations

from typing import NamedTuple

import chainer
import chainer.functions as F
import chainer.links as L

from chainer_nets.blocks import bn, conv_init
from chainer_nets.registry import Paper

ARXIV = "1502.03167"
PAPER = "Batch Normalization (BN-Inception)"


class ConvBN(chainer.Chain):
    """Convolution without bias, batch normalization, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, ksize: int, stride: int = 1) -> None:
        super().__init__()
        with self.init_scope():
            self.conv = L.Convolution2D(
                in_ch, out_ch, ksize, stride, ksize // 2, nobias=True, initialW=conv_init()
            )
            self.bn = bn(out_ch)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """ReLU(BN(W * x))."""
        return F.relu(self.bn(self.conv(x)))


#: Filters per input channel of the separable first convolution (the paper's depth multiplier).
DEPTH_MULTIPLIER = 8


class SeparableConvBN(chainer.Chain):
    r"""Separable convolution, BN, ReLU: a depthwise :math:`k\times k` convolution with
    ``multiplier`` filters per input channel, then a 1x1 convolution (both without bias)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        ksize: int,
        stride: int = 1,
        multiplier: int = DEPTH_MULTIPLIER,
    ) -> None:
        super().__init__()
        mid = in_ch * multiplier
        with self.init_scope():
            self.depthwise = L.Convolution2D(
                in_ch,
                mid,
                ksize,
                stride,
                ksize // 2,
                nobias=True,
                initialW=conv_init(),
                groups=in_ch,
            )
            self.pointwise = L.Convolution2D(mid, out_ch, 1, nobias=True, initialW=conv_init())
            self.bn = bn(out_ch)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """ReLU(BN(W_point * (W_depth * x))), with no normalisation between the two parts."""
        return F.relu(self.bn(self.pointwise(self.depthwise(x))))


class Widths(NamedTuple):
    """One row of the appendix table: #1x1, #3x3 reduce, #3x3, double #3x3 reduce,
    double #3x3, pool kind, pool projection (0: passed through), stride."""

    c1: int
    r3: int
    c3: int
    rd: int
    cd: int
    pool: str  # "avg" or "max"
    proj: int
    stride: int = 1

    def out(self, in_ch: int) -> int:
        """Output channels; a pass-through pooling branch keeps the input's ``in_ch``."""
        return self.c1 + self.c3 + self.cd + (self.proj if self.proj else in_ch)


#: The appendix table (Figure 5) of the paper, module by module.
FIGURE5: dict[str, Widths] = {
    "3a": Widths(64, 64, 64, 64, 96, "avg", 32),
    "3b": Widths(64, 64, 96, 64, 96, "avg", 64),
    "3c": Widths(0, 128, 160, 64, 96, "max", 0, 2),
    "4a": Widths(224, 64, 96, 96, 128, "avg", 128),
    "4b": Widths(192, 96, 128, 96, 128, "avg", 128),
    "4c": Widths(160, 128, 160, 128, 160, "avg", 128),
    "4d": Widths(96, 128, 192, 160, 192, "avg", 128),
    "4e": Widths(0, 128, 192, 192, 256, "max", 0, 2),
    "5a": Widths(352, 192, 320, 160, 224, "avg", 128),
    "5b": Widths(352, 192, 320, 192, 224, "max", 128),
}
#: The output sizes the table prints (28x28x256 after 3a, ... 7x7x1024 after 5b).
TABLE_OUT = {
    "3a": 256,
    "3b": 320,
    "3c": 576,
    "4a": 576,
    "4b": 576,
    "4c": 608,
    "4d": 608,
    "4e": 1056,
    "5a": 1024,
    "5b": 1024,
}


class BNInception(chainer.Chain):
    r"""The modified Inception module: 1x1 | 1x1->3x3 | 1x1->3x3->3x3 | pool(->1x1), concatenated.

    A stride-2 module drops the 1x1 branch and the projection; its 3x3 branch and the second
    convolution of its double-3x3 branch have stride 2, as does its max-pooling."""

    def __init__(self, in_ch: int, w: Widths) -> None:
        super().__init__()
        self.widths, self.out_ch = w, w.out(in_ch)
        with self.init_scope():
            if w.c1:
                self.b1 = ConvBN(in_ch, w.c1, 1)
            self.r3 = ConvBN(in_ch, w.r3, 1)
            self.b3 = ConvBN(w.r3, w.c3, 3, w.stride)
            self.rd = ConvBN(in_ch, w.rd, 1)
            self.d1 = ConvBN(w.rd, w.cd, 3)
            self.d2 = ConvBN(w.cd, w.cd, 3, w.stride)
            if w.proj:
                self.proj = ConvBN(in_ch, w.proj, 1)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """The branches concatenated along the channels."""
        w = self.widths
        ys = [self.b1(x)] if w.c1 else []
        ys.append(self.b3(self.r3(x)))
        ys.append(self.d2(self.d1(self.rd(x))))
        if w.pool == "avg":
            p = F.average_pooling_2d(x, 3, w.stride, 1)
        else:
            p = F.max_pooling_2d(x, 3, w.stride, 1, cover_all=False)
        ys.append(self.proj(p) if w.proj else p)
        return F.concat(ys, axis=1)


class Stem(NamedTuple):
    """The layers before module 3a: the first convolution and whether the stem max-pools."""

    first_ksize: int
    first_stride: int
    pool: bool


IMAGENET_STEM = Stem(7, 2, True)  # 224 -> 112 -> 56 -> 28
#: The CIFAR-10 change, all of it: no down-sampling before 3a (32x32 there).
CIFAR_STEM = Stem(3, 1, False)


class BNInceptionNet(chainer.Chain):
    """The BN-Inception network of the paper's appendix table."""

    def __init__(self, n_classes: int = 1000, stem: Stem = IMAGENET_STEM) -> None:
        super().__init__()
        self.stem_cfg = stem
        with self.init_scope():
            self.conv1 = SeparableConvBN(3, 64, stem.first_ksize, stem.first_stride)
            self.conv2_reduce = ConvBN(64, 64, 1)
            self.conv2 = ConvBN(64, 192, 3)
            self.inception = chainer.ChainList()
            in_ch = 192
            for w in FIGURE5.values():
                self.inception.append(BNInception(in_ch, w))
                in_ch = self.inception[-1].out_ch
            self.fc = L.Linear(in_ch, n_classes)

    def stem(self, x: chainer.Variable) -> chainer.Variable:
        """Separable conv 7x7/2, max-pool 3x3/2, conv 1x1, conv 3x3, max-pool 3x3/2 (ImageNet)."""
        h = self.conv1(x)
        if self.stem_cfg.pool:
            h = F.max_pooling_2d(h, 3, 2, 1, cover_all=False)
        h = self.conv2(self.conv2_reduce(h))
        if self.stem_cfg.pool:
            h = F.max_pooling_2d(h, 3, 2, 1, cover_all=False)
        return h

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores: stem, ten modules, global average pooling, linear (no dropout)."""
        h = self.stem(x)
        for module in self.inception:
            h = module(h)
        return self.fc(F.mean(h, axis=(2, 3)))


_PAPER = Paper(4, PAPER, ARXIV, "bn_inception")
_PAPER.register(
    "bn_inception_imagenet",
    BNInceptionNet,
    kwargs={"n_classes": 1000, "stem": IMAGENET_STEM},
    description="BN-Inception, ImageNet configuration (224x224, 1000 classes); not trained here",
    dataset="imagenet",
)
_PAPER.register(
    "bn_inception",
    BNInceptionNet,
    kwargs={"n_classes": 10, "stem": CIFAR_STEM},
    description="BN-Inception on CIFAR-10: the paper's modules, stem without down-sampling",
)
