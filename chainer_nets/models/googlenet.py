r"""Going Deeper with Convolutions (Szegedy et al., 2014; arXiv 1409.4842): GoogLeNet.

The paper's question: how can a network grow deeper and wider while its compute stays
within a fixed budget? Its answer is the Inception module: four parallel branches on the
same input, concatenated along the channels,

.. math::  \mathbf{y} = \big[\, W_{1}\!*\!\mathbf{x} \;\big|\; W_{3}\!*\!\sigma(R_{3}\!*\!\mathbf{x})
           \;\big|\; W_{5}\!*\!\sigma(R_{5}\!*\!\mathbf{x}) \;\big|\;
           P\!*\!\operatorname{maxpool}_{3\times3}(\mathbf{x}) \,\big]
           \qquad(\text{each branch followed by ReLU}),

where the 1x1 "reductions" :math:`R_3, R_5` shrink the channels before the expensive 3x3 and
5x5 convolutions and the 1x1 projection :math:`P` bounds the pooling branch's width.

ImageNet network (Table 1): a 7x7/2 convolution, max-pool, LRN, 1x1 and 3x3 convolutions, LRN,
max-pool, then modules 3a-3b, max-pool, 4a-4e, max-pool, 5a-5b, 7x7 average pooling, dropout
0.4 and a linear layer. Two auxiliary classifiers on 4a and 4d (average pooling 5x5/3, 1x1
convolution to 128, fully connected 1024, dropout 0.7, linear) add their losses with weight 0.3
during training only. Convolutions have biases and no batch normalization (2014).

CIFAR-10 adaptation (:data:`CIFAR_STEM`, the one place it differs): the stem keeps its
layers but none of its down-sampling (3x3 stride-1 first convolution, no max-pools), so
module 3a sees 32x32 instead of 28x28 maps and 4a/4d 16x16 instead of 14x14: the auxiliary
heads' 5x5/3 pooling then gives the same 4x4 grid as on ImageNet.
"""

from __future__ import annotations

from typing import NamedTuple

import chainer
import chainer.functions as F
import chainer.links as L
from chainer import initializers

from chainer_nets.registry import Paper

ARXIV = "1409.4842"
PAPER = "Going Deeper with Convolutions (GoogLeNet)"
AUX_WEIGHT = 0.3  # Section 5: the auxiliary losses are added with weight 0.3


class Widths(NamedTuple):
    """One row of Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj."""

    c1: int
    r3: int
    c3: int
    r5: int
    c5: int
    proj: int

    @property
    def out(self) -> int:
        """Output channels: the four branches concatenated."""
        return self.c1 + self.c3 + self.c5 + self.proj


#: Table 1 of the paper, module by module (the "output size" column is :attr:`Widths.out`).
TABLE1: dict[str, Widths] = {
    "3a": Widths(64, 96, 128, 16, 32, 32),
    "3b": Widths(128, 128, 192, 32, 96, 64),
    "4a": Widths(192, 96, 208, 16, 48, 64),
    "4b": Widths(160, 112, 224, 24, 64, 64),
    "4c": Widths(128, 128, 256, 24, 64, 64),
    "4d": Widths(112, 144, 288, 32, 64, 64),
    "4e": Widths(256, 160, 320, 32, 128, 128),
    "5a": Widths(256, 160, 320, 32, 128, 128),
    "5b": Widths(384, 192, 384, 48, 128, 128),
}
POOL_AFTER = ("3b", "4e")  # max-pool 3x3/2 between the stages
AUX_AFTER = ("4a", "4d")


def conv(in_ch: int, out_ch: int, ksize: int, stride: int = 1, pad: int | None = None):
    """Convolution with bias, Caffe's "xavier" (LeCun-uniform) weights and bias 0.2, as in the
    BVLC reference definition of GoogLeNet."""
    pad = ksize // 2 if pad is None else pad
    return L.Convolution2D(
        in_ch,
        out_ch,
        ksize,
        stride,
        pad,
        initialW=initializers.LeCunUniform(),
        initial_bias=initializers.Constant(0.2),
    )


def max_pool_s2(h: chainer.Variable) -> chainer.Variable:
    """3x3/2 max-pooling rounding the output size up, as Caffe does (112 -> 56 -> 28 -> 14 -> 7)."""
    return F.max_pooling_2d(h, 3, 2, 0, cover_all=True)


def lrn(h: chainer.Variable) -> chainer.Variable:
    r"""Caffe's LRN (size 5, :math:`\alpha=10^{-4}`, :math:`\beta=0.75`, k=1); Caffe divides
    :math:`\alpha` by the size, Chainer does not."""
    return F.local_response_normalization(h, n=5, k=1.0, alpha=1e-4 / 5, beta=0.75)


class Inception(chainer.Chain):
    """The Inception module: 1x1 | 1x1->3x3 | 1x1->5x5 | maxpool 3x3->1x1, concatenated."""

    def __init__(self, in_ch: int, w: Widths) -> None:
        super().__init__()
        self.widths = w
        with self.init_scope():
            self.b1 = conv(in_ch, w.c1, 1)
            self.r3 = conv(in_ch, w.r3, 1)
            self.b3 = conv(w.r3, w.c3, 3)
            self.r5 = conv(in_ch, w.r5, 1)
            self.b5 = conv(w.r5, w.c5, 5)
            self.proj = conv(in_ch, w.proj, 1)

    @property
    def out_ch(self) -> int:
        """Channels of the concatenated output."""
        return self.widths.out

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """The four branches, each ending in ReLU, concatenated along the channels."""
        y1 = F.relu(self.b1(x))
        y3 = F.relu(self.b3(F.relu(self.r3(x))))
        y5 = F.relu(self.b5(F.relu(self.r5(x))))
        yp = F.relu(self.proj(F.max_pooling_2d(x, 3, 1, 1)))
        return F.concat((y1, y3, y5, yp), axis=1)


class AuxClassifier(chainer.Chain):
    """Auxiliary head: avg-pool 5x5/3, 1x1 conv 128, FC 1024, dropout 0.7, FC to the classes."""

    def __init__(self, in_ch: int, n_classes: int, grid: int = 4) -> None:
        super().__init__()
        with self.init_scope():
            self.conv = conv(in_ch, 128, 1)
            self.fc1 = L.Linear(128 * grid * grid, 1024)
            self.fc2 = L.Linear(1024, n_classes)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores from an intermediate feature map."""
        h = F.relu(self.conv(F.average_pooling_2d(x, 5, 3)))
        h = F.dropout(F.relu(self.fc1(h)), 0.7)
        return self.fc2(h)


class Stem(NamedTuple):
    """The layers before module 3a: how the first convolution and the two max-pools look."""

    first_ksize: int
    first_stride: int
    pool: bool  # the two 3x3/2 max-pools of the stem


IMAGENET_STEM = Stem(7, 2, True)  # 224 -> 112 -> 56 -> 28
#: The CIFAR-10 change, all of it: no down-sampling before 3a (32x32 there).
CIFAR_STEM = Stem(3, 1, False)


def aux_loss_weighted(
    main_loss: chainer.Variable, aux_logits: list, t: chainer.Variable, weight: float, lossfun
) -> chainer.Variable:
    """Total training loss: the main loss plus ``weight`` times each auxiliary head's loss."""
    loss = main_loss
    for logits in aux_logits:
        loss = loss + weight * lossfun(logits, t)
    return loss


class GoogLeNet(chainer.Chain):
    """GoogLeNet (Table 1) with its two auxiliary classifiers (training time only)."""

    def __init__(self, n_classes: int = 1000, stem: Stem = IMAGENET_STEM, aux: bool = True) -> None:
        super().__init__()
        self.stem_cfg = stem
        self.aux_logits: list = []
        with self.init_scope():
            self.conv1 = conv(3, 64, stem.first_ksize, stem.first_stride)
            self.conv2_reduce = conv(64, 64, 1)
            self.conv2 = conv(64, 192, 3)
            self.inception = chainer.ChainList()
            self.aux = chainer.ChainList()
            in_ch = 192
            for name, w in TABLE1.items():
                self.inception.append(Inception(in_ch, w))
                in_ch = w.out
                if aux and name in AUX_AFTER:
                    self.aux.append(AuxClassifier(in_ch, n_classes))
            self.fc = L.Linear(in_ch, n_classes)

    def stem(self, x: chainer.Variable) -> chainer.Variable:
        """conv 7x7/2, max-pool, LRN, conv 1x1, conv 3x3, LRN, max-pool (ImageNet)."""
        h = F.relu(self.conv1(x))
        if self.stem_cfg.pool:
            h = max_pool_s2(h)
        h = lrn(h)
        h = F.relu(self.conv2(F.relu(self.conv2_reduce(h))))
        h = lrn(h)
        return max_pool_s2(h) if self.stem_cfg.pool else h

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores; in training mode also keeps the auxiliary heads' scores in
        ``self.aux_logits`` for :meth:`loss` (empty at test time)."""
        self.aux_logits = []
        h = self.stem(x)
        heads = iter(self.aux)
        for name, module in zip(TABLE1, self.inception, strict=True):
            h = module(h)
            if chainer.config.train and len(self.aux) and name in AUX_AFTER:
                self.aux_logits.append(next(heads)(h))
            if name in POOL_AFTER:
                h = max_pool_s2(h)
        h = F.dropout(F.mean(h, axis=(2, 3)), 0.4)  # 7x7 average pooling = global here
        return self.fc(h)

    def loss(self, y: chainer.Variable, t: chainer.Variable) -> chainer.Variable:
        """Training loss: softmax cross-entropy of the main head plus 0.3 times each
        auxiliary head's, the latter only when the last forward pass was in training mode."""
        main = F.softmax_cross_entropy(y, t)
        return aux_loss_weighted(main, self.aux_logits, t, AUX_WEIGHT, F.softmax_cross_entropy)


_PAPER = Paper(3, PAPER, ARXIV, "googlenet")
_PAPER.register(
    "googlenet_imagenet",
    GoogLeNet,
    kwargs={"n_classes": 1000, "stem": IMAGENET_STEM},
    description="GoogLeNet, ImageNet configuration (224x224, 1000 classes, both auxiliary "
    "heads); not trained here",
    dataset="imagenet",
)
_PAPER.register(
    "googlenet",
    GoogLeNet,
    kwargs={"n_classes": 10, "stem": CIFAR_STEM},
    description="GoogLeNet on CIFAR-10: the paper's modules and auxiliary heads, stem without "
    "down-sampling",
)
