r"""SqueezeNet (Iandola et al., 2016; arXiv 1602.07360): AlexNet-level accuracy with 50x fewer
parameters.

The paper's question: how small can a network be and still match AlexNet on ImageNet? Its
three strategies: (1) use 1x1 filters instead of 3x3 ones (9x fewer weights each); (2) feed
the remaining 3x3 filters few input channels; (3) down-sample late, so that the layers see
large activation maps. Strategies 1 and 2 are the **Fire module**: a 1x1 *squeeze*
convolution to :math:`s_{1\times1}` channels, then an *expand* layer of :math:`e_{1\times1}`
1x1 and :math:`e_{3\times3}` 3x3 filters side by side, concatenated,

.. math::  \mathbf{s} = \sigma(S * \mathbf{x}), \qquad
           \mathbf{y} = \big[\, \sigma(E_1 * \mathbf{s}) \;\big|\; \sigma(E_3 * \mathbf{s}) \,\big],
           \qquad s_{1\times1} < e_{1\times1} + e_{3\times3},

with :math:`\sigma` = ReLU. A 3x3 convolution from :math:`C` to :math:`e` channels has
:math:`9Ce` weights; the Fire module that replaces it has
:math:`Cs + s\,e_{1\times1} + 9\,s\,e_{3\times3}`.

Section 5 sets every module's widths from five metaparameters (:func:`fire_widths`): module
:math:`i = 0..7` has :math:`e_i = base_e + incr_e\lfloor i/freq \rfloor` expand filters, a
fraction :math:`pct_{3\times3}` of them 3x3, and :math:`s_i = SR \cdot e_i` squeeze filters;
SqueezeNet uses :math:`base_e = incr_e = 128`, :math:`pct_{3\times3} = 0.5`, :math:`freq = 2`
and the squeeze ratio :math:`SR = 0.125` (:data:`TABLE1`).

ImageNet network, v1.0 (Table 1; the authors' Caffe definition ``SqueezeNet_v1.0``): conv1
7x7/2 with 96 filters, max-pool 3x3/2, fire2-fire4, max-pool, fire5-fire8, max-pool, fire9,
dropout 0.5, conv10 (1x1 to the classes), global average pooling, softmax. No fully connected
layer, no batch normalization; ReLU after every convolution (conv10 included, as in the Caffe
definition). Caffe's "xavier" weights (LeCun-uniform), zero biases, conv10 from
:math:`\mathcal{N}(0, 0.01^2)`. Table 1 prints a 224x224 input, but its 111x111 conv1 output
(and the Caffe definition's crops) mean 227x227. Pooling rounds the size up, as Caffe does;
at 227 every division is exact (111 -> 55 -> 27 -> 13). The Caffe definition pads conv10 by 1
(a 15x15 map whose border is ReLU of the bias); Table 1's 13x13 is followed here.

Bypass variants (Section 6, Figure 2, Table 3): *simple bypass* adds each of fire3, 5, 7, 9's
input to its output (only there do the widths match; the sum is not followed by a ReLU, as in
the authors' residual Caffe definition), :math:`\mathbf{y} = \mathrm{Fire}(\mathbf{x}) +
\mathbf{x}`; *complex bypass* adds, in addition, a 1x1 convolution of the input around fire2,
4, 6, 8, :math:`\mathbf{y} = \mathrm{Fire}(\mathbf{x}) + P * \mathbf{x}` (the paper gives it
no activation; it is linear here, with a bias).

The 2016 Chainer implementation (:data:`PREACT`, registered as ``squeezenet_bn``): simple
bypass, every convolution of a Fire module and conv10 preceded by batch normalization and ReLU
(pre-activation order; the two expand layers each have their own BN on the squeeze output),
conv1 without BN or ReLU of its own, conv10 without a ReLU after it, convolution biases kept,
He-normal (fan-in) weights.

CIFAR-10 adaptation (:data:`CIFAR_STEM`, the one place it differs): conv1 keeps its 96
filters but is 3x3 with stride 1 and padding 1, and the max-pool after it is dropped, so
fire2-4 see 32x32 maps, fire5-8 16x16 and fire9 8x8. That is the paper's "down-sample late"
kept on a small image, and nearly the grids of the 2016 code (32, 17, 9), which up-sampled
CIFAR-10 to 128x128 and kept the 7x7/2 conv1 and all three pools.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import chainer
import chainer.functions as F
import chainer.links as L
from chainer import initializers

from chainer_nets.registry import Paper

ARXIV = "1602.07360"
PAPER = "SqueezeNet"
DROPOUT = 0.5  # after fire9 (Section 3.3)


class FireSpec(NamedTuple):
    """A Fire module's widths: squeeze 1x1, expand 1x1, expand 3x3 (a row of Table 1)."""

    s1: int
    e1: int
    e3: int

    @property
    def out(self) -> int:
        """Output channels: the two expand layers concatenated."""
        return self.e1 + self.e3


def fire_widths(
    base_e: int = 128,
    incr_e: int = 128,
    pct_3x3: float = 0.5,
    freq: int = 2,
    sr: float = 0.125,
    n: int = 8,
) -> list[FireSpec]:
    r"""Section 5's metaparameters to per-module widths: :math:`e_i = base_e + incr_e
    \lfloor i/freq \rfloor`, :math:`e_{3\times3,i} = pct_{3\times3}\, e_i`, :math:`s_i = SR\, e_i`."""
    out = []
    for i in range(n):
        e = base_e + incr_e * (i // freq)
        e3 = round(e * pct_3x3)
        out.append(FireSpec(round(sr * e), e - e3, e3))
    return out


#: Table 1 of the paper, module by module (equal to ``fire_widths()``).
TABLE1: dict[str, FireSpec] = {
    "fire2": FireSpec(16, 64, 64),
    "fire3": FireSpec(16, 64, 64),
    "fire4": FireSpec(32, 128, 128),
    "fire5": FireSpec(32, 128, 128),
    "fire6": FireSpec(48, 192, 192),
    "fire7": FireSpec(48, 192, 192),
    "fire8": FireSpec(64, 256, 256),
    "fire9": FireSpec(64, 256, 256),
}
CONV1_FILTERS = 96
POOL_AFTER = ("fire4", "fire8")  # and after conv1 when the stem pools
#: Section 6: identity bypass where a module's input and output widths match ...
SIMPLE_BYPASS = ("fire3", "fire5", "fire7", "fire9")
#: ... and, in the complex variant, a 1x1 convolution around the others.
COMPLEX_BYPASS = ("fire2", "fire4", "fire6", "fire8")
BYPASSES = {
    "none": {},
    "simple": dict.fromkeys(SIMPLE_BYPASS, "identity"),
    "complex": {**dict.fromkeys(SIMPLE_BYPASS, "identity"), **dict.fromkeys(COMPLEX_BYPASS, "1x1")},
}


def caffe_conv(
    in_ch: int, out_ch: int, ksize: int, stride: int = 1, pad: int = 0, initial_w=None
) -> L.Convolution2D:
    """Convolution with bias 0 and Caffe's "xavier" weights (LeCun-uniform), as the authors'
    definition initialises every layer but conv10."""
    return L.Convolution2D(
        in_ch, out_ch, ksize, stride, pad, initialW=initial_w or initializers.LeCunUniform()
    )


def he_conv(in_ch: int, out_ch: int, ksize: int, stride: int = 1, pad: int = 0) -> L.Convolution2D:
    """Convolution with bias 0 and He-normal (fan-in) weights, as the 2016 Chainer code."""
    return L.Convolution2D(
        in_ch, out_ch, ksize, stride, pad, initialW=initializers.HeNormal(fan_option="fan_in")
    )


def max_pool(h: chainer.Variable) -> chainer.Variable:
    """3x3/2 max-pooling rounding the size up, as Caffe does (111 -> 55 -> 27 -> 13; 32 -> 16)."""
    return F.max_pooling_2d(h, 3, 2, 0, cover_all=True)


class Fire(chainer.Chain):
    """The Fire module: squeeze 1x1 -> ReLU -> [expand 1x1 -> ReLU | expand 3x3 -> ReLU]."""

    def __init__(self, in_ch: int, spec: FireSpec) -> None:
        super().__init__()
        self.spec = spec
        with self.init_scope():
            self.squeeze = caffe_conv(in_ch, spec.s1, 1)
            self.expand1 = caffe_conv(spec.s1, spec.e1, 1)
            self.expand3 = caffe_conv(spec.s1, spec.e3, 3, pad=1)

    @property
    def out_ch(self) -> int:
        """Channels of the concatenated output, e1x1 + e3x3."""
        return self.spec.out

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        r""":math:`[\sigma(E_1 * \mathbf{s}) \,|\, \sigma(E_3 * \mathbf{s})]`,
        :math:`\mathbf{s} = \sigma(S * \mathbf{x})`."""
        s = F.relu(self.squeeze(x))
        return F.concat((F.relu(self.expand1(s)), F.relu(self.expand3(s))), axis=1)


class PreActFire(chainer.Chain):
    """The 2016 Chainer code's Fire module: each convolution preceded by BN and ReLU."""

    def __init__(self, in_ch: int, spec: FireSpec) -> None:
        super().__init__()
        self.spec = spec
        with self.init_scope():
            self.bn_squeeze = L.BatchNormalization(in_ch)
            self.squeeze = he_conv(in_ch, spec.s1, 1)
            self.bn_expand1 = L.BatchNormalization(spec.s1)
            self.expand1 = he_conv(spec.s1, spec.e1, 1)
            self.bn_expand3 = L.BatchNormalization(spec.s1)
            self.expand3 = he_conv(spec.s1, spec.e3, 3, pad=1)

    @property
    def out_ch(self) -> int:
        """Channels of the concatenated output, e1x1 + e3x3."""
        return self.spec.out

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        r""":math:`[E_1 * \sigma(\mathrm{BN}(\mathbf{s})) \,|\, E_3 * \sigma(\mathrm{BN}'(\mathbf{s}))]`,
        :math:`\mathbf{s} = S * \sigma(\mathrm{BN}(\mathbf{x}))`."""
        s = self.squeeze(F.relu(self.bn_squeeze(x)))
        e1 = self.expand1(F.relu(self.bn_expand1(s)))
        e3 = self.expand3(F.relu(self.bn_expand3(s)))
        return F.concat((e1, e3), axis=1)


class FireBlock(chainer.Chain):
    r"""A Fire module with its bypass: none, :math:`+\mathbf{x}` ("identity") or
    :math:`+P*\mathbf{x}` ("1x1", the complex bypass)."""

    def __init__(self, in_ch: int, spec: FireSpec, bypass: str | None, preact: bool) -> None:
        super().__init__()
        if bypass == "identity" and in_ch != spec.out:
            raise ValueError(f"an identity bypass needs equal widths, got {in_ch} -> {spec.out}")
        self.bypass = bypass
        with self.init_scope():
            self.fire = (PreActFire if preact else Fire)(in_ch, spec)
            if bypass == "1x1":
                self.proj = (he_conv if preact else caffe_conv)(in_ch, spec.out, 1)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Fire(x), plus x or P * x where the variant has a bypass."""
        y = self.fire(x)
        if self.bypass == "identity":
            return y + x
        if self.bypass == "1x1":
            return y + self.proj(x)
        return y


class Stem(NamedTuple):
    """conv1 and whether the max-pool after it is kept."""

    ksize: int
    stride: int
    pad: int
    pool: bool


IMAGENET_STEM = Stem(7, 2, 0, True)  # 227 -> 111 -> 55
#: The CIFAR-10 change, all of it: conv1 3x3/1, no pool before fire2 (32x32 there).
CIFAR_STEM = Stem(3, 1, 1, False)


class Variant(NamedTuple):
    """Which network: its bypasses and whether it is the pre-activation BN version."""

    bypass: str  # "none", "simple" or "complex"
    preact: bool = False


VANILLA = Variant("none")
SIMPLE = Variant("simple")
COMPLEX = Variant("complex")
PREACT = Variant("simple", preact=True)  # the 2016 Chainer code's network


class SqueezeNet(chainer.Chain):
    """SqueezeNet v1.0 (Table 1): conv1, eight Fire modules, conv10, global average pooling."""

    def __init__(
        self,
        n_classes: int = 1000,
        stem: Stem = IMAGENET_STEM,
        variant: Variant = VANILLA,
        widths: dict[str, FireSpec] | None = None,
        conv1_filters: int = CONV1_FILTERS,
    ) -> None:
        super().__init__()
        widths = TABLE1 if widths is None else widths
        self.stem_cfg, self.variant = stem, variant
        self.names = tuple(widths)
        bypass = BYPASSES[variant.bypass]
        conv = he_conv if variant.preact else caffe_conv
        with self.init_scope():
            self.conv1 = conv(3, conv1_filters, stem.ksize, stem.stride, stem.pad)
            self.fires = chainer.ChainList()
            in_ch = conv1_filters
            for name, spec in widths.items():
                self.fires.append(FireBlock(in_ch, spec, bypass.get(name), variant.preact))
                in_ch = spec.out
            if variant.preact:
                self.bn10 = L.BatchNormalization(in_ch)
                self.conv10 = he_conv(in_ch, n_classes, 1)
            else:
                self.conv10 = caffe_conv(in_ch, n_classes, 1, initial_w=initializers.Normal(0.01))

    def stages(self, x: chainer.Variable) -> Iterator[tuple[str, chainer.Variable]]:
        """Every row of Table 1 in order, as (layer name, its output)."""
        h = self.conv1(x)
        h = h if self.variant.preact else F.relu(h)
        yield "conv1", h
        if self.stem_cfg.pool:
            h = max_pool(h)
            yield "maxpool1", h
        for name, block in zip(self.names, self.fires, strict=True):
            h = block(h)
            yield name, h
            if name in POOL_AFTER:
                h = max_pool(h)
                yield "maxpool" + name[4:], h
        h = F.dropout(h, DROPOUT)
        if self.variant.preact:
            h = self.conv10(F.relu(self.bn10(h)))
        else:
            h = F.relu(self.conv10(h))
        yield "conv10", h
        yield "avgpool10", F.mean(h, axis=(2, 3))

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores: the output of the global average pooling."""
        *_, (_, scores) = self.stages(x)
        return scores


_PAPER = Paper(10, PAPER, ARXIV, "squeezenet")
_PAPER.register(
    "squeezenet_imagenet",
    SqueezeNet,
    kwargs={"n_classes": 1000, "stem": IMAGENET_STEM, "variant": VANILLA},
    paper_params="1.248424",  # Table 1, "# parameter before pruning": 1,248,424 (with biases)
    description="SqueezeNet v1.0, ImageNet configuration (227x227, 1000 classes); not trained here",
    dataset="imagenet",
)
_PAPER.register(
    "squeezenet_bypass_imagenet",
    SqueezeNet,
    kwargs={"n_classes": 1000, "stem": IMAGENET_STEM, "variant": SIMPLE},
    paper_params="1.248424",  # Table 3: the same 4.8MB as SqueezeNet; identity adds nothing
    description="SqueezeNet with simple bypass (Section 6), ImageNet configuration",
    dataset="imagenet",
)
_PAPER.register(
    "squeezenet_complex_bypass_imagenet",
    SqueezeNet,
    kwargs={"n_classes": 1000, "stem": IMAGENET_STEM, "variant": COMPLEX},
    description="SqueezeNet with complex bypass (Section 6), ImageNet configuration; the paper "
    "gives a size (7.7MB in Table 3), not a parameter count",
    dataset="imagenet",
)
_PAPER.register(
    "squeezenet",
    SqueezeNet,
    kwargs={"n_classes": 10, "stem": CIFAR_STEM, "variant": VANILLA},
    description="SqueezeNet v1.0 on CIFAR-10: Table 1's Fire modules, conv1 3x3/1 without the "
    "pool after it (no CIFAR-10 result in the paper)",
)
_PAPER.register(
    "squeezenet_bypass",
    SqueezeNet,
    kwargs={"n_classes": 10, "stem": CIFAR_STEM, "variant": SIMPLE},
    description="SqueezeNet with simple bypass on CIFAR-10",
)
_PAPER.register(
    "squeezenet_complex_bypass",
    SqueezeNet,
    kwargs={"n_classes": 10, "stem": CIFAR_STEM, "variant": COMPLEX},
    description="SqueezeNet with complex bypass on CIFAR-10",
)
_PAPER.register(
    "squeezenet_bn",
    SqueezeNet,
    kwargs={"n_classes": 10, "stem": CIFAR_STEM, "variant": PREACT},
    recipe="squeezenet_bn",
    # The 2016 table's figure (conv weights only, as its code counted), not the paper's.
    paper_params="0.7",
    params_counting="weights",
    description="the 2016 Chainer code's SqueezeNet: simple bypass, BN-ReLU before every "
    "convolution of the Fire modules and conv10; its parameter figure is the 2016 table's",
)
