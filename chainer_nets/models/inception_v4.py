r"""Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning
(Szegedy, Ioffe, Vanhoucke, Alemi, 2016; arXiv 1602.07261).

The paper's question: do residual connections help Inception networks, and is a cleaner,
more uniform pure Inception network as good? Its three networks share one plan (Figures 9
and 15): a stem down to a 35x35 grid, Inception modules on 35x35 (A), a grid reduction
(Reduction-A), modules on 17x17 (B), a second reduction (Reduction-B), modules on 8x8 (C),
global average pooling, dropout (keep 0.8) and a softmax.

* **Inception-v4** (:class:`InceptionV4`): the stem of Figure 3 (35x35x384), 4 x A
  (Figure 4), Reduction-A with :math:`(k, l, m, n) = (192, 224, 256, 384)` (Figure 7,
  Table 1), 7 x B (Figure 5), Reduction-B (Figure 8), 3 x C (Figure 6).
* **Inception-ResNet-v1 / v2** (:class:`InceptionResNet`): 5 x A, 10 x B, 5 x C of
  *residual* Inception blocks. Each block's branches are concatenated and projected back to
  the input's width by a 1x1 convolution without activation ("1x1 Conv Linear"), whose output
  is **scaled down before it is added** (Section 3.3, Figure 20):

.. math::  \mathbf{y} = \operatorname{ReLU}\big(\mathbf{x} + s\,W_{1\times1}\,
           [\,\mathcal{B}_1(\mathbf{x}) \mid \dots \mid \mathcal{B}_j(\mathbf{x})\,]\big),
           \qquad s \in [0.1, 0.3].

  Without it (:math:`s = 1`) the paper saw networks with more than about 1000 filters "die"
  early in training (the layer before the average pooling producing only zeros), which
  neither a lower learning rate nor extra batch normalization cured. ``scale`` is a
  constructor argument of every residual block and of :class:`InceptionResNet`; the default
  per-grid factors (0.17, 0.10, 0.20) are those of the authors' TF-slim definition.
  v1 (Figures 14, 10, 11, 12, 13) is as costly as Inception-v3; v2 (stem of Figure 3, Figures
  16, 17, 18, 19) as costly as Inception-v4. Batch normalization follows every ordinary
  convolution but not the summations (Section 3.2), so the linear projection has a bias.

Widths are the figures'. Two printed widths of Inception-ResNet-v2 cannot be what was built:
the linear 1x1 of the B block (Figure 17: 1154) and of the C block (Figure 19: 2048) must equal
the width they are added to, 1152 = 384 + 384 + 384 (Reduction-A with
:math:`(256, 256, 384, 384)` on 384 channels) and 2144 = 1152 + 384 + 288 + 320
(Figure 18); we use those. The authors' released Inception-ResNet-v2 (TF-slim, 55.8M
parameters) differs from the figures (an Inception-v3 stem plus a 320-wide Inception module,
10/20/10 blocks, widths 320/1088/2080, a final 1x1 convolution to 1536); it is registered
separately (:data:`V2_TFSLIM`) to pin the count against the public checkpoints.

CIFAR-10 adaptation (:data:`CIFAR_STEM`, the one place it differs): the stem keeps every layer
and width but none of its down-sampling: its stride-2 convolutions and max-pools use stride 1
and its unpadded ("V") convolutions are padded, so the 35x35 modules see 32x32 maps (15x15
and 7x7 after the two reductions, which are unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import chainer
import chainer.functions as F
import chainer.links as L

from chainer_nets.blocks import conv_init
from chainer_nets.models.inception_v3 import ConvBN
from chainer_nets.registry import Paper

ARXIV = "1602.07261"
PAPER = "Inception-v4, Inception-ResNet"
KEEP_PROB = 0.8  # Figures 9 and 15: dropout (keep 0.8) before the softmax
#: Residual scale per grid (35x35 A, 17x17 B, 8x8 C): the authors' TF-slim values, inside the
#: paper's 0.1-0.3.
TFSLIM_SCALES = (0.17, 0.10, 0.20)


class Stem(NamedTuple):
    """Whether the stem down-samples (ImageNet, 299 -> 35) or keeps the grid (CIFAR-10)."""

    downsample: bool

    def conv(self, i: int, o: int, ksize, stride: int = 1, valid: bool = False) -> ConvBN:
        """ConvBN; on ImageNet stride and "V" (no padding) as drawn, else stride 1, padded."""
        kh, kw = (ksize, ksize) if isinstance(ksize, int) else ksize
        if not self.downsample:
            stride, valid = 1, False
        return ConvBN(i, o, (kh, kw), stride, (0, 0) if valid else (kh // 2, kw // 2))

    def max_pool(self, x: chainer.Variable) -> chainer.Variable:
        """3x3/2 "V" max-pooling on ImageNet; 3x3/1 padded on CIFAR-10."""
        if self.downsample:
            return F.max_pooling_2d(x, 3, 2, 0, cover_all=False)
        return F.max_pooling_2d(x, 3, 1, 1, cover_all=False)


IMAGENET_STEM = Stem(True)
#: The CIFAR-10 change, all of it: the stem keeps the 32x32 grid.
CIFAR_STEM = Stem(False)
_SAME = IMAGENET_STEM  # modules after the stem: stride and padding as drawn on either data set


def cbn(i: int, o: int, ksize=1, stride: int = 1, valid: bool = False) -> ConvBN:
    """ConvBN after the stem: "same" padding unless ``valid`` (the reductions' "V" layers)."""
    return _SAME.conv(i, o, ksize, stride, valid)


def avg_pool_same(x: chainer.Variable) -> chainer.Variable:
    """3x3/1 average pooling that keeps the size (the zero border counts, as in Chainer's 2-D
    pooling; TF-slim's "SAME" pooling leaves it out: only the border pixels differ)."""
    return F.average_pooling_2d(x, 3, 1, 1)


def max_pool_reduce(x: chainer.Variable) -> chainer.Variable:
    """3x3/2 max-pooling without padding (35 -> 17 -> 8; 32 -> 15 -> 7 on CIFAR-10)."""
    return F.max_pooling_2d(x, 3, 2, 0, cover_all=False)


class StemV4(chainer.Chain):
    """Figure 3 (Inception-v4 and Inception-ResNet-v2): 299x299x3 -> 35x35x384."""

    out_ch = 384

    def __init__(self, stem: Stem = IMAGENET_STEM) -> None:
        super().__init__()
        self.cfg = stem
        c = stem.conv
        with self.init_scope():
            self.conv1 = c(3, 32, 3, 2, valid=True)  # 149x149x32
            self.conv2 = c(32, 32, 3, valid=True)  # 147x147x32
            self.conv3 = c(32, 64, 3)  # 147x147x64
            self.mix3_conv = c(64, 96, 3, 2, valid=True)  # | max-pool -> 73x73x160
            self.mix4_a1 = c(160, 64, 1)
            self.mix4_a2 = c(64, 96, 3, valid=True)
            self.mix4_b1 = c(160, 64, 1)
            self.mix4_b2 = c(64, 64, (7, 1))
            self.mix4_b3 = c(64, 64, (1, 7))
            self.mix4_b4 = c(64, 96, 3, valid=True)  # -> 71x71x192
            self.mix5_conv = c(192, 192, 3, 2, valid=True)  # | max-pool -> 35x35x384

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Three convolutions, then three filter concatenations."""
        h = self.conv3(self.conv2(self.conv1(x)))
        h = F.concat((self.cfg.max_pool(h), self.mix3_conv(h)), axis=1)
        a = self.mix4_a2(self.mix4_a1(h))
        b = self.mix4_b4(self.mix4_b3(self.mix4_b2(self.mix4_b1(h))))
        h = F.concat((a, b), axis=1)
        return F.concat((self.mix5_conv(h), self.cfg.max_pool(h)), axis=1)


class StemResNetV1(chainer.Chain):
    """Figure 14 (Inception-ResNet-v1): 299x299x3 -> 35x35x256, no concatenations."""

    out_ch = 256

    def __init__(self, stem: Stem = IMAGENET_STEM) -> None:
        super().__init__()
        self.cfg = stem
        c = stem.conv
        with self.init_scope():
            self.conv1 = c(3, 32, 3, 2, valid=True)  # 149x149x32
            self.conv2 = c(32, 32, 3, valid=True)  # 147x147x32
            self.conv3 = c(32, 64, 3)  # 147x147x64, then max-pool -> 73x73x64
            self.conv4 = c(64, 80, 1)  # 73x73x80
            self.conv5 = c(80, 192, 3, valid=True)  # 71x71x192
            self.conv6 = c(192, 256, 3, 2, valid=True)  # 35x35x256

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """A plain stack of convolutions and one max-pool."""
        h = self.cfg.max_pool(self.conv3(self.conv2(self.conv1(x))))
        return self.conv6(self.conv5(self.conv4(h)))


class StemTFSlimV2(chainer.Chain):
    """The authors' released Inception-ResNet-v2 stem (not the paper's Figure 3): the
    Inception-v3 stem to 35x35x192, then an Inception module to 320 channels."""

    out_ch = 320

    def __init__(self, stem: Stem = IMAGENET_STEM) -> None:
        super().__init__()
        self.cfg = stem
        c = stem.conv
        with self.init_scope():
            self.conv1 = c(3, 32, 3, 2, valid=True)
            self.conv2 = c(32, 32, 3, valid=True)
            self.conv3 = c(32, 64, 3)
            self.conv4 = c(64, 80, 1, valid=True)
            self.conv5 = c(80, 192, 3, valid=True)
            self.b0 = cbn(192, 96)
            self.b1_1 = cbn(192, 48)
            self.b1_2 = cbn(48, 64, 5)
            self.b2_1 = cbn(192, 64)
            self.b2_2 = cbn(64, 96, 3)
            self.b2_3 = cbn(96, 96, 3)
            self.b3 = cbn(192, 64)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Convolutions and two max-pools, then 96 | 5x5 64 | 3x3 3x3 96 | pool 64."""
        h = self.cfg.max_pool(self.conv3(self.conv2(self.conv1(x))))
        h = self.cfg.max_pool(self.conv5(self.conv4(h)))
        return F.concat(
            (
                self.b0(h),
                self.b1_2(self.b1_1(h)),
                self.b2_3(self.b2_2(self.b2_1(h))),
                self.b3(avg_pool_same(h)),
            ),
            axis=1,
        )


class InceptionA(chainer.Chain):
    """Figure 4, 35x35: avg-pool -> 1x1 96 | 1x1 96 | 1x1 64 -> 3x3 96 |
    1x1 64 -> 3x3 96 -> 3x3 96; 384 channels out."""

    out_ch = 384

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        with self.init_scope():
            self.proj = cbn(in_ch, 96)
            self.b1 = cbn(in_ch, 96)
            self.b3_1 = cbn(in_ch, 64)
            self.b3_2 = cbn(64, 96, 3)
            self.d1 = cbn(in_ch, 64)
            self.d2 = cbn(64, 96, 3)
            self.d3 = cbn(96, 96, 3)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """The four branches concatenated."""
        return F.concat(
            (
                self.proj(avg_pool_same(x)),
                self.b1(x),
                self.b3_2(self.b3_1(x)),
                self.d3(self.d2(self.d1(x))),
            ),
            axis=1,
        )


class InceptionB(chainer.Chain):
    """Figure 5, 17x17: avg-pool -> 1x1 128 | 1x1 384 | 1x1 192 -> 1x7 224 -> 7x1 256 |
    1x1 192 -> 1x7 192 -> 7x1 224 -> 1x7 224 -> 7x1 256; 1024 channels out."""

    out_ch = 1024

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        with self.init_scope():
            self.proj = cbn(in_ch, 128)
            self.b1 = cbn(in_ch, 384)
            self.s1 = cbn(in_ch, 192)
            self.s2 = cbn(192, 224, (1, 7))
            self.s3 = cbn(224, 256, (7, 1))
            self.d1 = cbn(in_ch, 192)
            self.d2 = cbn(192, 192, (1, 7))
            self.d3 = cbn(192, 224, (7, 1))
            self.d4 = cbn(224, 224, (1, 7))
            self.d5 = cbn(224, 256, (7, 1))

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """The four branches concatenated."""
        d = self.d5(self.d4(self.d3(self.d2(self.d1(x)))))
        return F.concat(
            (self.proj(avg_pool_same(x)), self.b1(x), self.s3(self.s2(self.s1(x))), d), axis=1
        )


class InceptionC(chainer.Chain):
    """Figure 6, 8x8: avg-pool -> 1x1 256 | 1x1 256 | 1x1 384 -> (1x3 256, 3x1 256) |
    1x1 384 -> 1x3 448 -> 3x1 512 -> (1x3 256, 3x1 256); 1536 channels out."""

    out_ch = 1536

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        with self.init_scope():
            self.proj = cbn(in_ch, 256)
            self.b1 = cbn(in_ch, 256)
            self.e1 = cbn(in_ch, 384)
            self.e_a = cbn(384, 256, (1, 3))
            self.e_b = cbn(384, 256, (3, 1))
            self.d1 = cbn(in_ch, 384)
            self.d2 = cbn(384, 448, (1, 3))
            self.d3 = cbn(448, 512, (3, 1))
            self.d_a = cbn(512, 256, (1, 3))
            self.d_b = cbn(512, 256, (3, 1))

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """The branches (both halves of the two split ones) concatenated."""
        e = self.e1(x)
        d = self.d3(self.d2(self.d1(x)))
        return F.concat(
            (
                self.proj(avg_pool_same(x)),
                self.b1(x),
                self.e_a(e),
                self.e_b(e),
                self.d_a(d),
                self.d_b(d),
            ),
            axis=1,
        )


class ReductionA(chainer.Chain):
    """Figure 7, 35 -> 17: max-pool 3x3/2 | 3x3/2 n | 1x1 k -> 3x3 l -> 3x3/2 m (Table 1
    gives k, l, m, n per network); ``in_ch + n + m`` channels out."""

    def __init__(self, in_ch: int, k: int, l: int, m: int, n: int) -> None:  # noqa: E741
        super().__init__()
        self.out_ch = in_ch + n + m
        with self.init_scope():
            self.b3 = cbn(in_ch, n, 3, 2, valid=True)
            self.d1 = cbn(in_ch, k)
            self.d2 = cbn(k, l, 3)
            self.d3 = cbn(l, m, 3, 2, valid=True)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Stride-2 pooling beside stride-2 convolutions, concatenated."""
        return F.concat((max_pool_reduce(x), self.b3(x), self.d3(self.d2(self.d1(x)))), axis=1)


class ReductionB(chainer.Chain):
    """Figure 8 (Inception-v4), 17 -> 8: max-pool 3x3/2 | 1x1 192 -> 3x3/2 192 |
    1x1 256 -> 1x7 256 -> 7x1 320 -> 3x3/2 320; ``in_ch + 512`` channels out."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.out_ch = in_ch + 192 + 320
        with self.init_scope():
            self.a1 = cbn(in_ch, 192)
            self.a2 = cbn(192, 192, 3, 2, valid=True)
            self.b1 = cbn(in_ch, 256)
            self.b2 = cbn(256, 256, (1, 7))
            self.b3 = cbn(256, 320, (7, 1))
            self.b4 = cbn(320, 320, 3, 2, valid=True)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Stride-2 pooling beside stride-2 convolutions, concatenated."""
        b = self.b4(self.b3(self.b2(self.b1(x))))
        return F.concat((max_pool_reduce(x), self.a2(self.a1(x)), b), axis=1)


class ResidualReductionB(chainer.Chain):
    """Figures 12 (v1) and 18 (v2), 17 -> 8: max-pool 3x3/2 | 1x1 a0 -> 3x3/2 a1 |
    1x1 b0 -> 3x3/2 b1 | 1x1 c0 -> 3x3 c1 -> 3x3/2 c2."""

    def __init__(self, in_ch: int, a: Sequence[int], b: Sequence[int], c: Sequence[int]) -> None:
        super().__init__()
        self.out_ch = in_ch + a[1] + b[1] + c[2]
        with self.init_scope():
            self.a1 = cbn(in_ch, a[0])
            self.a2 = cbn(a[0], a[1], 3, 2, valid=True)
            self.b1 = cbn(in_ch, b[0])
            self.b2 = cbn(b[0], b[1], 3, 2, valid=True)
            self.c1 = cbn(in_ch, c[0])
            self.c2 = cbn(c[0], c[1], 3)
            self.c3 = cbn(c[1], c[2], 3, 2, valid=True)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Stride-2 pooling beside three stride-2 convolution branches, concatenated."""
        return F.concat(
            (
                max_pool_reduce(x),
                self.a2(self.a1(x)),
                self.b2(self.b1(x)),
                self.c3(self.c2(self.c1(x))),
            ),
            axis=1,
        )


class ResidualInception(chainer.Chain):
    r"""A residual Inception block: :math:`\operatorname{ReLU}(x + s\,W[\mathcal{B}_1(x) \mid
    \dots])`; subclasses build the branches in ``self.branches`` and call :meth:`_finish`."""

    def __init__(self, in_ch: int, scale: float, activation: bool = True) -> None:
        super().__init__()
        self.in_ch, self.out_ch = in_ch, in_ch
        self.scale, self.activation = float(scale), activation

    def _finish(self, concat_ch: int) -> None:
        with self.init_scope():  # "1x1 Conv (Linear)": no BN, no ReLU, so a bias
            self.up = L.Convolution2D(concat_ch, self.in_ch, 1, initialW=conv_init())

    def mixed(self, x: chainer.Variable) -> chainer.Variable:
        """The branches' outputs concatenated."""
        raise NotImplementedError

    def residual(self, x: chainer.Variable) -> chainer.Variable:
        """The scaled residual :math:`s\\,W[\\dots]` that is added to ``x``."""
        r = self.up(self.mixed(x))
        return r * self.scale if self.scale != 1.0 else r

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """ReLU(x + scale * residual(x)); no ReLU for the TF-slim network's last block."""
        h = x + self.residual(x)
        return F.relu(h) if self.activation else h


class InceptionResNetA(ResidualInception):
    """Figures 10 (v1) and 16 (v2), 35x35: 1x1 b0 | 1x1 b1[0] -> 3x3 b1[1] |
    1x1 b2[0] -> 3x3 b2[1] -> 3x3 b2[2]; then the linear 1x1 back to ``in_ch``."""

    def __init__(
        self, in_ch: int, b0: int, b1: Sequence[int], b2: Sequence[int], scale: float = 0.17
    ) -> None:
        super().__init__(in_ch, scale)
        with self.init_scope():
            self.c0 = cbn(in_ch, b0)
            self.c1_1 = cbn(in_ch, b1[0])
            self.c1_2 = cbn(b1[0], b1[1], 3)
            self.c2_1 = cbn(in_ch, b2[0])
            self.c2_2 = cbn(b2[0], b2[1], 3)
            self.c2_3 = cbn(b2[1], b2[2], 3)
        self._finish(b0 + b1[1] + b2[2])

    def mixed(self, x: chainer.Variable) -> chainer.Variable:
        """The three branches concatenated."""
        return F.concat(
            (self.c0(x), self.c1_2(self.c1_1(x)), self.c2_3(self.c2_2(self.c2_1(x)))), axis=1
        )


class InceptionResNetB(ResidualInception):
    """Figures 11 (v1) and 17 (v2), 17x17: 1x1 b0 | 1x1 b1[0] -> 1x7 b1[1] -> 7x1 b1[2];
    then the linear 1x1 back to ``in_ch``."""

    def __init__(self, in_ch: int, b0: int, b1: Sequence[int], scale: float = 0.10) -> None:
        super().__init__(in_ch, scale)
        with self.init_scope():
            self.c0 = cbn(in_ch, b0)
            self.c1_1 = cbn(in_ch, b1[0])
            self.c1_2 = cbn(b1[0], b1[1], (1, 7))
            self.c1_3 = cbn(b1[1], b1[2], (7, 1))
        self._finish(b0 + b1[2])

    def mixed(self, x: chainer.Variable) -> chainer.Variable:
        """The two branches concatenated."""
        return F.concat((self.c0(x), self.c1_3(self.c1_2(self.c1_1(x)))), axis=1)


class InceptionResNetC(ResidualInception):
    """Figures 13 (v1) and 19 (v2), 8x8: 1x1 b0 | 1x1 b1[0] -> 1x3 b1[1] -> 3x1 b1[2];
    then the linear 1x1 back to ``in_ch``."""

    def __init__(
        self,
        in_ch: int,
        b0: int,
        b1: Sequence[int],
        scale: float = 0.20,
        activation: bool = True,
    ) -> None:
        super().__init__(in_ch, scale, activation)
        with self.init_scope():
            self.c0 = cbn(in_ch, b0)
            self.c1_1 = cbn(in_ch, b1[0])
            self.c1_2 = cbn(b1[0], b1[1], (1, 3))
            self.c1_3 = cbn(b1[1], b1[2], (3, 1))
        self._finish(b0 + b1[2])

    def mixed(self, x: chainer.Variable) -> chainer.Variable:
        """The two branches concatenated."""
        return F.concat((self.c0(x), self.c1_3(self.c1_2(self.c1_1(x)))), axis=1)


class Head(chainer.Chain):
    """Average pooling over the grid, dropout (keep 0.8), linear."""

    def __init__(self, in_ch: int, n_classes: int) -> None:
        super().__init__()
        with self.init_scope():
            self.fc = L.Linear(in_ch, n_classes)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores."""
        return self.fc(F.dropout(F.mean(x, axis=(2, 3)), 1.0 - KEEP_PROB))


class InceptionV4(chainer.Chain):
    """Inception-v4 (Figure 9): stem, 4 x A, Reduction-A, 7 x B, Reduction-B, 3 x C."""

    def __init__(self, n_classes: int = 1000, stem: Stem = IMAGENET_STEM) -> None:
        super().__init__()
        with self.init_scope():
            self.stem = StemV4(stem)
            blocks = [InceptionA(384) for _ in range(4)]
            blocks.append(ReductionA(384, 192, 224, 256, 384))  # Table 1: -> 1024
            blocks += [InceptionB(1024) for _ in range(7)]
            blocks.append(ReductionB(1024))  # -> 1536
            blocks += [InceptionC(1536) for _ in range(3)]
            self.blocks = chainer.ChainList(*blocks)
            self.head = Head(1536, n_classes)

    def features(self, x: chainer.Variable) -> chainer.Variable:
        """The last 8x8 (7x7 on CIFAR-10) feature map, before the pooling."""
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return h

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores."""
        return self.head(self.features(x))


class Layout(NamedTuple):
    """One Inception-ResNet network: its stem, repeats, and every block's widths."""

    stem: type
    repeats: tuple[int, int, int]  # residual blocks on the 35x35, 17x17 and 8x8 grids
    a: tuple  # (b0, b1 widths, b2 widths) of InceptionResNetA
    reduction_a: tuple[int, int, int, int]  # k, l, m, n (Table 1)
    b: tuple  # (b0, b1 widths) of InceptionResNetB
    reduction_b: tuple  # (a, b, c) widths of ResidualReductionB
    c: tuple  # (b0, b1 widths) of InceptionResNetC
    last_linear_c: bool = False  # one more C block without ReLU (TF-slim only)
    final_conv: int = 0  # a 1x1 ConvBN before the pooling (TF-slim only: 1536)


#: Inception-ResNet-v1: Figures 14, 10, 7 (192, 192, 256, 384), 11, 12, 13.
V1 = Layout(
    StemResNetV1,
    (5, 10, 5),
    (32, (32, 32), (32, 32, 32)),
    (192, 192, 256, 384),
    (128, (128, 128, 128)),
    ((256, 384), (256, 256), (256, 256, 256)),
    (192, (192, 192, 192)),
)
#: Inception-ResNet-v2: Figures 3, 16, 7 (256, 256, 384, 384), 17, 18, 19.
V2 = Layout(
    StemV4,
    (5, 10, 5),
    (32, (32, 32), (32, 48, 64)),
    (256, 256, 384, 384),
    (192, (128, 160, 192)),
    ((256, 384), (256, 288), (256, 288, 320)),
    (192, (192, 224, 256)),
)
#: The authors' released Inception-ResNet-v2 (TF-slim ``inception_resnet_v2.py``), which the
#: public checkpoints use: another stem, 10/20/9 blocks plus a linear C, a final 1x1 to 1536.
V2_TFSLIM = V2._replace(stem=StemTFSlimV2, repeats=(10, 20, 9), last_linear_c=True, final_conv=1536)


class InceptionResNet(chainer.Chain):
    """Inception-ResNet (Figure 15): stem, A blocks, Reduction-A, B blocks, Reduction-B,
    C blocks; ``scale`` is the residual scale, one value or one per grid (A, B, C)."""

    def __init__(
        self,
        layout: Layout = V2,
        n_classes: int = 1000,
        stem: Stem = IMAGENET_STEM,
        scale: float | Sequence[float] = TFSLIM_SCALES,
    ) -> None:
        super().__init__()
        sa, sb, sc = (scale,) * 3 if isinstance(scale, int | float) else tuple(scale)
        na, nb, nc = layout.repeats
        with self.init_scope():
            self.stem = layout.stem(stem)
            ch = self.stem.out_ch
            blocks: list[chainer.Link] = [InceptionResNetA(ch, *layout.a, sa) for _ in range(na)]
            blocks.append(ReductionA(ch, *layout.reduction_a))
            ch = blocks[-1].out_ch
            blocks += [InceptionResNetB(ch, *layout.b, sb) for _ in range(nb)]
            blocks.append(ResidualReductionB(ch, *layout.reduction_b))
            ch = blocks[-1].out_ch
            blocks += [InceptionResNetC(ch, *layout.c, sc) for _ in range(nc)]
            if layout.last_linear_c:
                blocks.append(InceptionResNetC(ch, *layout.c, 1.0, activation=False))
            if layout.final_conv:
                blocks.append(cbn(ch, layout.final_conv))
                ch = layout.final_conv
            self.blocks = chainer.ChainList(*blocks)
            self.head = Head(ch, n_classes)

    def features(self, x: chainer.Variable) -> chainer.Variable:
        """The last feature map, before the pooling."""
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return h

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores."""
        return self.head(self.features(x))


_PAPER = Paper(9, PAPER, ARXIV, "inception_v4")
_IMAGENET = "ImageNet configuration (299x299, 1000 classes); not trained here"
_PAPER.register(
    "inception_v4_imagenet",
    InceptionV4,
    kwargs={"n_classes": 1000, "stem": IMAGENET_STEM},
    description=f"Inception-v4 (Figures 3-9), {_IMAGENET}",
    dataset="imagenet",
)
_PAPER.register(
    "inception_resnet_v1_imagenet",
    InceptionResNet,
    kwargs={"layout": V1, "n_classes": 1000, "stem": IMAGENET_STEM},
    description=f"Inception-ResNet-v1 (Figures 10-15), {_IMAGENET}",
    dataset="imagenet",
)
_PAPER.register(
    "inception_resnet_v2_imagenet",
    InceptionResNet,
    kwargs={"layout": V2, "n_classes": 1000, "stem": IMAGENET_STEM},
    description=f"Inception-ResNet-v2 as in the paper's figures (3, 7, 15-19), {_IMAGENET}",
    dataset="imagenet",
)
_PAPER.register(
    "inception_resnet_v2_tfslim_imagenet",
    InceptionResNet,
    kwargs={"layout": V2_TFSLIM, "n_classes": 1000, "stem": IMAGENET_STEM},
    description="Inception-ResNet-v2 as the authors released it (TF-slim; differs from the "
    f"figures), {_IMAGENET}",
    dataset="imagenet",
)
_PAPER.register(
    "inception_v4",
    InceptionV4,
    kwargs={"n_classes": 10, "stem": CIFAR_STEM},
    description="Inception-v4 on CIFAR-10: the paper's modules, stem without down-sampling",
)
_PAPER.register(
    "inception_resnet_v1",
    InceptionResNet,
    kwargs={"layout": V1, "n_classes": 10, "stem": CIFAR_STEM},
    description="Inception-ResNet-v1 on CIFAR-10: residual scales 0.17/0.10/0.20, stem without "
    "down-sampling",
)
_PAPER.register(
    "inception_resnet_v2",
    InceptionResNet,
    kwargs={"layout": V2, "n_classes": 10, "stem": CIFAR_STEM},
    description="Inception-ResNet-v2 on CIFAR-10: residual scales 0.17/0.10/0.20, stem without "
    "down-sampling",
)
