r"""Xception: Deep Learning with Depthwise Separable Convolutions (Chollet, 2016;
arXiv 1610.02357).

The paper reads an Inception module as a convolution split into a cross-channel part (the
1x1 convolutions) and a spatial part (the 3x3 convolutions on a few channel segments), and
takes that split to its extreme: one segment per channel. The result is the *depthwise
separable convolution*: a depthwise 3x3 convolution :math:`D` (each channel filtered on its
own) followed by a pointwise 1x1 convolution :math:`P` that mixes the channels,

.. math::  \mathrm{Sep}(\mathbf{x})_o(p) = \sum_{c=1}^{C} P_{o,c}
           \sum_{k \in \{-1,0,1\}^2} D_{c,k}\, x_c(p + k),

with :math:`9C + CO` weights instead of the :math:`9CO` of a regular 3x3 convolution, and
**no non-linearity (and no batch normalization) between** :math:`D` **and** :math:`P`: the
paper's Figure 10 finds that a ReLU or ELU there makes ImageNet training slower and worse
(:class:`SeparableConv2D`; its ``inner`` argument exists only to repeat that comparison).

Xception (Figure 5) has 36 convolutional layers (the stem's two regular ones, then 34
separable ones) in 14 modules, all with linear residual connections except the first and
the last, every convolution followed by batch normalization:

* entry flow: 3x3/2 convolution to 32, 3x3 to 64; three modules of two separable
  convolutions (128, 256, 728 channels) and a 3x3/2 max-pool, added to a 1x1/2 convolution
  with BN of the module's input (:class:`EntryModule`); 299x299 -> 19x19x728;
* middle flow: eight modules of three ReLU-separable convolutions (728) added to their
  input (:class:`MiddleModule`);
* exit flow: ReLU-SepConv 728, ReLU-SepConv 1024, max-pool, plus a 1x1/2 convolution; then
  SepConv 1536-ReLU, SepConv 2048-ReLU, global average pooling, dropout 0.5 (the paper's
  ImageNet regularisation) and the logistic-regression layer.

Layer widths, where the ReLUs sit (the first entry module starts without one, the
shortcuts branch off before the ReLU) and the "same" paddings are the reference Keras
definition's (``keras.applications.xception``), whose trainable parameters are the paper's
Table 3 figure, 22,855,952, exactly as counted here (weights, BN scale and shift, the
classifier's bias). The stem's two 3x3 convolutions are unpadded (299 -> 149 -> 147). One
difference that changes no shape: a "same" 3x3/2 max-pool on an even size (74 -> 37) pads
one row and column at the bottom and right in TensorFlow, while Chainer pads one on every
side, so that one pool's windows sit one pixel up and left of the reference's.

The depthwise convolution is ``L.Convolution2D(C, C, 3, groups=C)``: a grouped convolution
with one channel per group, which is Chainer's own differentiable function on CuPy (cuDNN's
grouped kernels where available) and ``chainer_nets.cpu_fast``'s depthwise kernel on NumPy
arrays. (``L.DepthwiseConvolution2D`` is a separate Chainer function with no fast CPU path.)
Its He-normal initial weights count the fan of a depthwise filter, its nine taps, not
:math:`9C`.

CIFAR-10 adaptation (:data:`CIFAR_LAYOUT`, the one place it differs; the paper has no
CIFAR experiment): the stem's convolutions keep their widths but use stride 1 and padding
1, and the first entry module (128 channels) does not down-sample (no max-pool, a stride-1
1x1 projection), so the three grids are 32x32, 16x16 and 8x8 (middle flow) and the exit
flow works on 4x4 — the grids of the CIFAR ResNets. Everything else, widths and depth
included, is the ImageNet network.
"""

from __future__ import annotations

from typing import NamedTuple

import chainer
import chainer.functions as F
import chainer.links as L
from chainer import initializers

from chainer_nets.blocks import bn, conv1x1, conv_init
from chainer_nets.registry import Paper

ARXIV = "1610.02357"
PAPER = "Xception: Depthwise Separable Convolutions"
DROPOUT = 0.5  # Section 4.3: before the logistic regression layer (ImageNet)
#: What Figure 10 tries between the depthwise and the pointwise convolution (Xception: nothing).
INNER_ACTIVATIONS = {"relu": F.relu, "elu": F.elu}


class SeparableConv2D(chainer.Chain):
    r"""Depthwise 3x3 convolution then pointwise 1x1 convolution, nothing in between:
    :math:`\mathrm{Sep}(\mathbf{x}) = P\,(D \circledast \mathbf{x})`, no biases.

    ``inner`` (``"relu"`` or ``"elu"``) puts that activation between the two, as in the
    paper's Figure 10; the paper's Xception, and every registered model, has none."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        ksize: int = 3,
        stride: int = 1,
        inner: str | None = None,
    ) -> None:
        super().__init__()
        if inner is not None and inner not in INNER_ACTIVATIONS:
            raise ValueError(f"inner must be None or one of {sorted(INNER_ACTIVATIONS)}")
        self.inner = inner
        with self.init_scope():
            # one group per channel: W is (C, 1, k, k); the fan of each filter is its k*k taps
            self.depthwise = L.Convolution2D(
                in_ch,
                in_ch,
                ksize,
                stride,
                ksize // 2,
                nobias=True,
                initialW=initializers.HeNormal(fan_option="fan_in"),
                groups=in_ch,
            )
            self.pointwise = conv1x1(in_ch, out_ch)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """:math:`P(D \\circledast x)` (with ``inner`` applied in between if one was given)."""
        h = self.depthwise(x)
        if self.inner is not None:
            h = INNER_ACTIVATIONS[self.inner](h)
        return self.pointwise(h)


class SepBN(chainer.Chain):
    """A separable convolution followed by batch normalization, optionally preceded by ReLU
    (the paper's "ReLU - SeparableConv" boxes; BN is not drawn in Figure 5 but follows every
    convolution)."""

    def __init__(
        self, in_ch: int, out_ch: int, pre_relu: bool = True, inner: str | None = None
    ) -> None:
        super().__init__()
        self.pre_relu = pre_relu
        with self.init_scope():
            self.sep = SeparableConv2D(in_ch, out_ch, inner=inner)
            self.bn = bn(out_ch)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """BN(Sep(ReLU(x))), or BN(Sep(x)) without the leading ReLU."""
        return self.bn(self.sep(F.relu(x) if self.pre_relu else x))


def max_pool_same(x: chainer.Variable) -> chainer.Variable:
    """3x3/2 max-pooling with "same" output size, ceil(n / 2) (147 -> 74 -> 37 -> 19 -> 10)."""
    return F.max_pooling_2d(x, 3, 2, 1, cover_all=False)


class EntryModule(chainer.Chain):
    r"""Two separable convolutions and a 3x3/2 max-pool, plus a 1x1/2 convolution with BN:

    .. math:: \mathbf{y} = \mathrm{pool}\big(\mathrm{BN}(\mathrm{Sep}(\mathrm{ReLU}(
              \mathrm{BN}(\mathrm{Sep}(\rho(\mathbf{x}))))))\big) + \mathrm{BN}(W_{1\times1/2}
              \mathbf{x}),

    :math:`\rho` ReLU except in the first module (its input already went through one), the
    last separable convolution's width ``mid`` (the exit flow's module widens 728 -> 1024
    only in its second). ``stride=1`` (the CIFAR-10 layout's first module) drops the pool and
    the projection's stride."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        mid: int | None = None,
        pre_relu: bool = True,
        stride: int = 2,
        inner: str | None = None,
    ) -> None:
        super().__init__()
        mid = out_ch if mid is None else mid
        self.stride = stride
        with self.init_scope():
            self.sep1 = SepBN(in_ch, mid, pre_relu, inner)
            self.sep2 = SepBN(mid, out_ch, True, inner)
            self.shortcut = conv1x1(in_ch, out_ch, stride)
            self.shortcut_bn = bn(out_ch)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Residual branch (pooled) plus the 1x1 projection of ``x``."""
        h = self.sep2(self.sep1(x))
        if self.stride == 2:
            h = max_pool_same(h)
        return h + self.shortcut_bn(self.shortcut(x))


class MiddleModule(chainer.Chain):
    r"""Three ReLU-separable convolutions with BN added to the identity:
    :math:`\mathbf{y} = \mathbf{x} + \mathcal{F}(\mathbf{x})`,
    :math:`\mathcal{F} = (\mathrm{BN}\circ\mathrm{Sep}\circ\mathrm{ReLU})^{3}`."""

    def __init__(self, channels: int, inner: str | None = None) -> None:
        super().__init__()
        with self.init_scope():
            self.seps = chainer.ChainList(*[SepBN(channels, channels, True, inner) for _ in "abc"])

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """``x`` plus the three separable convolutions of it."""
        h = x
        for sep in self.seps:
            h = sep(h)
        return x + h


class Layout(NamedTuple):
    """Where the network down-samples: the stem and the first entry module."""

    stem_stride: int  # of the first 3x3 convolution
    stem_pad: int  # of both stem convolutions
    first_stride: int  # of the first entry module (2: max-pool and 1x1/2 projection)


IMAGENET_LAYOUT = Layout(2, 0, 2)  # 299 -> 149 -> 147 -> 74 -> 37 -> 19 (middle) -> 10
#: The CIFAR-10 change, all of it: 32 -> 32 -> 32 -> 16 -> 8 (middle flow) -> 4.
CIFAR_LAYOUT = Layout(1, 1, 1)


class Widths(NamedTuple):
    """The channel widths of Figure 5 (smaller ones give the notebook's miniatures)."""

    stem: tuple[int, int] = (32, 64)
    entry: tuple[int, ...] = (128, 256, 728)
    middle_repeats: int = 8
    exit: tuple[int, int, int] = (1024, 1536, 2048)


FIGURE_5 = Widths()


class Xception(chainer.Chain):
    """Xception (Figure 5): entry flow, middle flow, exit flow, logistic regression."""

    def __init__(
        self,
        n_classes: int = 1000,
        layout: Layout = IMAGENET_LAYOUT,
        widths: Widths = FIGURE_5,
        dropout: float = DROPOUT,
        inner: str | None = None,
    ) -> None:
        super().__init__()
        self.dropout = dropout
        s0, s1 = widths.stem
        m = widths.entry[-1]
        e1, e2, e3 = widths.exit
        with self.init_scope():
            self.conv1 = L.Convolution2D(
                3, s0, 3, layout.stem_stride, layout.stem_pad, nobias=True, initialW=conv_init()
            )
            self.bn1 = bn(s0)
            self.conv2 = L.Convolution2D(
                s0, s1, 3, 1, layout.stem_pad, nobias=True, initialW=conv_init()
            )
            self.bn2 = bn(s1)
            self.entry = chainer.ChainList()
            in_ch = s1
            for i, w in enumerate(widths.entry):
                stride = layout.first_stride if i == 0 else 2
                self.entry.append(EntryModule(in_ch, w, None, i > 0, stride, inner))
                in_ch = w
            self.middle = chainer.ChainList(
                *[MiddleModule(m, inner) for _ in range(widths.middle_repeats)]
            )
            self.exit_module = EntryModule(m, e1, m, True, 2, inner)
            self.sep3 = SepBN(e1, e2, False, inner)
            self.sep4 = SepBN(e2, e3, False, inner)
            self.fc = L.Linear(e3, n_classes)

    def entry_flow(self, x: chainer.Variable) -> chainer.Variable:
        """Stem and the three down-sampling modules (299x299x3 -> 19x19x728)."""
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        for module in self.entry:
            h = module(h)
        return h

    def middle_flow(self, h: chainer.Variable) -> chainer.Variable:
        """Eight residual modules at constant size (19x19x728 on ImageNet)."""
        for module in self.middle:
            h = module(h)
        return h

    def exit_flow(self, h: chainer.Variable) -> chainer.Variable:
        """The last residual module, two separable convolutions with ReLU, global average
        pooling: a 2048-vector per image."""
        h = self.exit_module(h)
        h = F.relu(self.sep3(h))
        h = F.relu(self.sep4(h))
        return F.mean(h, axis=(2, 3))

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores (logits)."""
        h = self.exit_flow(self.middle_flow(self.entry_flow(x)))
        return self.fc(F.dropout(h, self.dropout))


_PAPER = Paper(20, PAPER, ARXIV, "xception")
_PAPER.register(
    "xception_imagenet",
    Xception,
    kwargs={"n_classes": 1000, "layout": IMAGENET_LAYOUT},
    # Table 3: 22,855,952 (BN scale and shift and the classifier's bias included)
    paper_params="22.855952",
    description="Xception, ImageNet configuration (299x299, 1000 classes); not trained here",
    dataset="imagenet",
)
_PAPER.register(
    "xception",
    Xception,
    kwargs={"n_classes": 10, "layout": CIFAR_LAYOUT},
    description="Xception on CIFAR-10: Figure 5's widths and depth, stem and first entry "
    "module without down-sampling",
)
