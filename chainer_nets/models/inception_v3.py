r"""Rethinking the Inception Architecture (Szegedy et al., 2015; arXiv 1512.00567): Inception-v3.

The paper's question: how can a convolutional network be scaled up while adding as little
computation as possible? Its answers are factorisations of large convolutions and a cheaper
way to shrink the grid:

* a 5x5 convolution becomes two 3x3 (:math:`2\cdot 9/25 = 72\%` of the cost), and an
  :math:`n\times n` convolution a :math:`1\times n` followed by an :math:`n\times 1`
  (:math:`2n/n^2` of the cost; :math:`n = 7` on the 17x17 grid, :class:`InceptionB`);
* the grid is halved by a stride-2 convolution branch and a stride-2 pooling branch side by
  side, concatenated (:class:`ReductionA`, :class:`ReductionB`), rather than pooling before or
  after an Inception module;
* an auxiliary classifier with batch normalization on the 17x17 grid (:class:`AuxHead`);
* label-smoothing regularisation (Section 7): the one-hot target :math:`\delta_{k,y}` becomes

.. math::  q'(k) = (1-\epsilon)\,\delta_{k,y} + \frac{\epsilon}{K}, \qquad
           \ell = -\sum_k q'(k)\log p(k) = (1-\epsilon)\,H(q, p) + \epsilon\, H(u, p),

  with :math:`\epsilon = 0.1` and :math:`u` uniform over the :math:`K` classes
  (:func:`label_smoothing_cross_entropy`).

Every convolution is followed by batch normalization and ReLU (:class:`ConvBN`). The paper
gives the outline (Table 1) but not the branch widths; those are the public reference
definition's (TensorFlow-slim / Keras ``inception_v3``), as is the stem, which differs from
the paper's Table 1 in its fifth layer (1x1 to 80 channels, not 3x3).

CIFAR-10 adaptation (:data:`CIFAR_STEM`, the one place it differs): the stem's convolutions
keep their widths but use stride 1 and padding, and its two max-pools are dropped, so the
35x35 modules see 32x32 maps (then 15x15 and 7x7 after the reductions); the auxiliary head's
last convolution covers its pooled grid, 4x4 instead of 5x5.
"""

from __future__ import annotations

from typing import NamedTuple

import chainer
import chainer.functions as F
import chainer.links as L

from chainer_nets.blocks import bn, conv_init
from chainer_nets.registry import Paper

ARXIV = "1512.00567"
PAPER = "Rethinking the Inception Architecture (Inception-v3)"
LABEL_SMOOTHING = 0.1  # Section 7
AUX_WEIGHT = 0.4  # the reference training script's weight of the auxiliary loss
CLIP_NORM = 2.0  # Section 8: gradient clipping with threshold 2.0


def label_smoothing_cross_entropy(
    y: chainer.Variable, t: chainer.Variable, eps: float = LABEL_SMOOTHING
) -> chainer.Variable:
    r"""Mean over the batch of :math:`-\sum_k q'(k)\log p(k)`, with
    :math:`q' = (1-\epsilon)\,\text{one-hot}(t) + \epsilon/K`."""
    logp = F.log_softmax(y)
    nll = -F.select_item(logp, t)
    uniform = -F.mean(logp, axis=1)
    return F.mean((1.0 - eps) * nll + eps * uniform)


class ConvBN(chainer.Chain):
    """Convolution without bias (any kernel shape), batch normalization, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, ksize, stride: int = 1, pad=0) -> None:
        super().__init__()
        with self.init_scope():
            self.conv = L.Convolution2D(
                in_ch, out_ch, ksize, stride, pad, nobias=True, initialW=conv_init()
            )
            self.bn = bn(out_ch)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """ReLU(BN(W * x))."""
        return F.relu(self.bn(self.conv(x)))


def c1x1(i: int, o: int) -> ConvBN:
    """1x1 ConvBN."""
    return ConvBN(i, o, 1)


def c3x3(i: int, o: int, stride: int = 1, pad: int = 1) -> ConvBN:
    """3x3 ConvBN ("same" padding unless ``pad=0``)."""
    return ConvBN(i, o, 3, stride, pad)


def c1xn(i: int, o: int, n: int) -> ConvBN:
    """1 x n ConvBN, padded to keep the size."""
    return ConvBN(i, o, (1, n), 1, (0, n // 2))


def cnx1(i: int, o: int, n: int) -> ConvBN:
    """n x 1 ConvBN, padded to keep the size."""
    return ConvBN(i, o, (n, 1), 1, (n // 2, 0))


def avg_pool_same(x: chainer.Variable) -> chainer.Variable:
    """3x3/1 average pooling that keeps the size."""
    return F.average_pooling_2d(x, 3, 1, 1)


def max_pool_reduce(x: chainer.Variable) -> chainer.Variable:
    """3x3/2 max-pooling without padding (35 -> 17 -> 8)."""
    return F.max_pooling_2d(x, 3, 2, 0, cover_all=False)


class InceptionA(chainer.Chain):
    """35x35 module: 1x1 64 | 1x1 48 -> 5x5 64 | 1x1 64 -> 3x3 96 -> 3x3 96 | avg -> 1x1."""

    def __init__(self, in_ch: int, pool_proj: int) -> None:
        super().__init__()
        self.out_ch = 64 + 64 + 96 + pool_proj
        with self.init_scope():
            self.b1 = c1x1(in_ch, 64)
            self.b5_1 = c1x1(in_ch, 48)
            self.b5_2 = ConvBN(48, 64, 5, 1, 2)
            self.d1 = c1x1(in_ch, 64)
            self.d2 = c3x3(64, 96)
            self.d3 = c3x3(96, 96)
            self.proj = c1x1(in_ch, pool_proj)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """The four branches concatenated."""
        return F.concat(
            (
                self.b1(x),
                self.b5_2(self.b5_1(x)),
                self.d3(self.d2(self.d1(x))),
                self.proj(avg_pool_same(x)),
            ),
            axis=1,
        )


class ReductionA(chainer.Chain):
    """35 -> 17 grid reduction: 3x3/2 384 | 1x1 64 -> 3x3 96 -> 3x3/2 96 | max-pool 3x3/2."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.out_ch = 384 + 96 + in_ch
        with self.init_scope():
            self.b3 = c3x3(in_ch, 384, 2, 0)
            self.d1 = c1x1(in_ch, 64)
            self.d2 = c3x3(64, 96)
            self.d3 = c3x3(96, 96, 2, 0)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Stride-2 convolutions beside stride-2 pooling, concatenated."""
        return F.concat((self.b3(x), self.d3(self.d2(self.d1(x))), max_pool_reduce(x)), axis=1)


class InceptionB(chainer.Chain):
    r"""17x17 module with :math:`n\times n` factorised into :math:`1\times n` and
    :math:`n\times 1` (n = 7): 1x1 192 | 1x1 c -> 1x7 c -> 7x1 192 |
    1x1 c -> 7x1 c -> 1x7 c -> 7x1 c -> 1x7 192 | avg -> 1x1 192."""

    def __init__(self, in_ch: int, c: int, n: int = 7) -> None:
        super().__init__()
        self.out_ch = 4 * 192
        with self.init_scope():
            self.b1 = c1x1(in_ch, 192)
            self.s1 = c1x1(in_ch, c)
            self.s2 = c1xn(c, c, n)
            self.s3 = cnx1(c, 192, n)
            self.d1 = c1x1(in_ch, c)
            self.d2 = cnx1(c, c, n)
            self.d3 = c1xn(c, c, n)
            self.d4 = cnx1(c, c, n)
            self.d5 = c1xn(c, 192, n)
            self.proj = c1x1(in_ch, 192)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """The four branches concatenated."""
        d = self.d5(self.d4(self.d3(self.d2(self.d1(x)))))
        return F.concat(
            (self.b1(x), self.s3(self.s2(self.s1(x))), d, self.proj(avg_pool_same(x))), axis=1
        )


class ReductionB(chainer.Chain):
    """17 -> 8 grid reduction: 1x1 192 -> 3x3/2 320 | 1x1 192 -> 1x7 -> 7x1 -> 3x3/2 192 | max."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.out_ch = 320 + 192 + in_ch
        with self.init_scope():
            self.a1 = c1x1(in_ch, 192)
            self.a2 = c3x3(192, 320, 2, 0)
            self.b1 = c1x1(in_ch, 192)
            self.b2 = c1xn(192, 192, 7)
            self.b3 = cnx1(192, 192, 7)
            self.b4 = c3x3(192, 192, 2, 0)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Stride-2 convolutions beside stride-2 pooling, concatenated."""
        b = self.b4(self.b3(self.b2(self.b1(x))))
        return F.concat((self.a2(self.a1(x)), b, max_pool_reduce(x)), axis=1)


class InceptionC(chainer.Chain):
    """8x8 module with expanded filter banks: 1x1 320 | 1x1 384 -> (1x3 384, 3x1 384) |
    1x1 448 -> 3x3 384 -> (1x3 384, 3x1 384) | avg -> 1x1 192; 2048 channels out."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.out_ch = 320 + 768 + 768 + 192
        with self.init_scope():
            self.b1 = c1x1(in_ch, 320)
            self.e1 = c1x1(in_ch, 384)
            self.e_a = c1xn(384, 384, 3)
            self.e_b = cnx1(384, 384, 3)
            self.d1 = c1x1(in_ch, 448)
            self.d2 = c3x3(448, 384)
            self.d_a = c1xn(384, 384, 3)
            self.d_b = cnx1(384, 384, 3)
            self.proj = c1x1(in_ch, 192)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """The branches (the two split ones contribute both halves) concatenated."""
        e = self.e1(x)
        d = self.d2(self.d1(x))
        return F.concat(
            (
                self.b1(x),
                self.e_a(e),
                self.e_b(e),
                self.d_a(d),
                self.d_b(d),
                self.proj(avg_pool_same(x)),
            ),
            axis=1,
        )


class AuxHead(chainer.Chain):
    """Auxiliary classifier on the 17x17 grid, batch-normalised: avg-pool 5x5/3, 1x1 128,
    a convolution to 768 covering the pooled grid (5x5 on ImageNet), linear."""

    def __init__(self, in_ch: int, n_classes: int, grid: int) -> None:
        super().__init__()
        with self.init_scope():
            self.conv1 = c1x1(in_ch, 128)
            self.conv2 = ConvBN(128, 768, grid)
            self.fc = L.Linear(768, n_classes)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores from the 17x17 feature map."""
        h = self.conv2(self.conv1(F.average_pooling_2d(x, 5, 3)))
        return self.fc(h)


class Stem(NamedTuple):
    """The layers before the 35x35 modules and the auxiliary head's pooled grid size."""

    stride: int  # of the first 3x3 convolution
    pad: int  # of the 3x3 convolutions that the reference leaves unpadded
    pool: bool  # the stem's two 3x3/2 max-pools
    aux_grid: int  # 5 for 17x17 inputs to the auxiliary head; 4 for 15x15


IMAGENET_STEM = Stem(2, 0, True, 5)  # 299 -> 149 -> 147 -> 147 -> 73 -> 71 -> 35
#: The CIFAR-10 change, all of it: no down-sampling before the 35x35 modules (32x32 there).
CIFAR_STEM = Stem(1, 1, False, 4)


class InceptionV3(chainer.Chain):
    """Inception-v3 (Table 1 outline, reference widths) with the BN auxiliary head."""

    def __init__(
        self,
        n_classes: int = 1000,
        stem: Stem = IMAGENET_STEM,
        aux: bool = True,
        label_smoothing: float = LABEL_SMOOTHING,
    ) -> None:
        super().__init__()
        self.stem_cfg, self.eps = stem, label_smoothing
        self.aux_logits: list = []
        p = stem.pad
        with self.init_scope():
            self.conv1 = c3x3(3, 32, stem.stride, p)
            self.conv2 = c3x3(32, 32, 1, p)
            self.conv3 = c3x3(32, 64, 1, 1)
            self.conv4 = c1x1(64, 80)
            self.conv5 = c3x3(80, 192, 1, p)
            self.blocks = chainer.ChainList(
                InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64), ReductionA(288)
            )
            for c in (128, 160, 160, 192):
                self.blocks.append(InceptionB(768, c))
            self.blocks.append(ReductionB(768))
            self.blocks.append(InceptionC(1280))
            self.blocks.append(InceptionC(2048))
            if aux:
                self.aux = AuxHead(768, n_classes, stem.aux_grid)
            self.fc = L.Linear(2048, n_classes)

    def stem(self, x: chainer.Variable) -> chainer.Variable:
        """3x3/2 32, 3x3 32, 3x3 64, max-pool, 1x1 80, 3x3 192, max-pool (ImageNet)."""
        h = self.conv3(self.conv2(self.conv1(x)))
        if self.stem_cfg.pool:
            h = max_pool_reduce(h)
        h = self.conv5(self.conv4(h))
        return max_pool_reduce(h) if self.stem_cfg.pool else h

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores; in training mode the auxiliary head's scores go to ``self.aux_logits``."""
        self.aux_logits = []
        h = self.stem(x)
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == 7 and chainer.config.train and hasattr(self, "aux"):  # after the 4th B
                self.aux_logits.append(self.aux(h))
        h = F.dropout(F.mean(h, axis=(2, 3)), 0.2)  # the reference keeps 80% of the features
        return self.fc(h)

    def loss(self, y: chainer.Variable, t: chainer.Variable) -> chainer.Variable:
        """Training loss: label-smoothed cross-entropy of the main head plus 0.4 times the
        auxiliary head's (training mode only)."""
        loss = label_smoothing_cross_entropy(y, t, self.eps)
        for logits in self.aux_logits:
            loss = loss + AUX_WEIGHT * label_smoothing_cross_entropy(logits, t, self.eps)
        return loss

    def configure_optimizer(self, optimizer: chainer.Optimizer, recipe: object = None) -> None:
        """Gradient clipping at norm 2.0 (Section 8)."""
        optimizer.add_hook(chainer.optimizer_hooks.GradientClipping(CLIP_NORM))


_PAPER = Paper(5, PAPER, ARXIV, "inception_v3")
_PAPER.register(
    "inception_v3_imagenet",
    InceptionV3,
    kwargs={"n_classes": 1000, "stem": IMAGENET_STEM},
    description="Inception-v3, ImageNet configuration (299x299, 1000 classes, auxiliary head); "
    "not trained here",
    dataset="imagenet",
)
_PAPER.register(
    "inception_v3",
    InceptionV3,
    kwargs={"n_classes": 10, "stem": CIFAR_STEM},
    description="Inception-v3 on CIFAR-10: reference widths, BN auxiliary head, label "
    "smoothing 0.1, stem without down-sampling",
)
