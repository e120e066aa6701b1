"""Pieces several papers share: conv/BN constructors, shortcuts, classifier heads, the stage plan.

Conventions used by every model in the package:

* Convolutions feeding a batch normalization have no bias and He-normal weights,
  :math:`\\mathcal{N}(0, 2/n)`; batch-normalization scales :math:`\\gamma` start at 1 or, as
  Torch's default ``reset()`` does, uniform in :math:`[0, 1)`. Which fan :math:`n` counts and
  which :math:`\\gamma` are chosen *per model*, after that paper's reference code, by the
  :class:`InitScheme` the model builds its layers under (:func:`init_scheme`);
  :func:`conv_init` and :func:`bn` read it, and are the one place it takes effect.
  :data:`FB_RESNET_TORCH` (fan-out, :math:`\\gamma = 1`) is the default.
* Batch normalization uses Torch's eps and running-average decay (1e-5, 0.9), which the
  papers' reference code used.
* Where a model loops over stages, :func:`stage_plan` lays out every block's input width,
  output width and stride: the width changes on the first block of a stage and the stride is
  2 there, except in the first stage.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import chainer
import chainer.functions as F
import chainer.links as L
import numpy
from chainer import initializers


@dataclass(frozen=True)
class InitScheme:
    """How a model's convolutions and BN scales are initialised, and which code says so."""

    fan: str  # "fan_in" or "fan_out": the n of He's N(0, 2/n)
    bn_gamma: str  # "one" or "uniform" (Torch's default BN reset: U(0, 1))
    source: str  # the reference code this follows

    def __post_init__(self) -> None:
        if self.fan not in ("fan_in", "fan_out") or self.bn_gamma not in ("one", "uniform"):
            raise ValueError(f"unknown init scheme {self}")


#: fb.resnet.torch (``models/resnet.lua``/``preresnet.lua``: ConvInit counts k*k*C_out, BNInit
#: fills 1), also KaimingHe/resnet-1k-layers. The package default.
FB_RESNET_TORCH = InitScheme("fan_out", "one", "fb.resnet.torch ConvInit/BNInit")
#: Torch code that counts the input fan and leaves BN at Torch's default U(0, 1) scale:
#: szagoruyko/wide-residual-networks after commit ea02518 ("fix MSRA init", 2016-09-08) and
#: yueatsprograms/Stochastic_Depth (``nninit.kaiming`` with the ReLU gain, cudnn BN defaults).
TORCH_FAN_IN = InitScheme("fan_in", "uniform", "Torch fan-in He init, default BN reset")

_scheme: InitScheme = FB_RESNET_TORCH


@contextlib.contextmanager
def init_scheme(scheme: InitScheme) -> Iterator[InitScheme]:
    """Build the layers created inside the ``with`` block under ``scheme``."""
    global _scheme
    previous, _scheme = _scheme, scheme
    try:
        yield scheme
    finally:
        _scheme = previous


def current_init_scheme() -> InitScheme:
    """The scheme layers built now are initialised with."""
    return _scheme


class UnitUniform(chainer.initializer.Initializer):
    """Fills an array with U(0, 1) draws, Torch's default ``BatchNormalization:reset()`` scale."""

    def __call__(self, array) -> None:
        """Fill ``array`` in place."""
        xp = chainer.backend.get_array_module(array)
        array[...] = xp.random.uniform(0.0, 1.0, array.shape).astype(array.dtype)


def conv_init() -> initializers.HeNormal:
    """He-normal initializer over the fan the current :class:`InitScheme` names."""
    return initializers.HeNormal(fan_option=_scheme.fan)


class BlockPlan(NamedTuple):
    """One block of a stage plan: its widths and stride, and where it stands."""

    in_ch: int
    out_ch: int
    stride: int
    stage: int  # 0-based stage
    index: int  # 0-based position inside the stage


def stage_plan(
    in_ch: int, widths: Sequence[int], depths: int | Sequence[int], expansion: int = 1
) -> Iterator[BlockPlan]:
    """Every block of a staged network, first to last: stage ``s`` has ``depths[s]`` blocks of
    width ``widths[s]`` (a block outputs ``expansion`` times that); the first block of every
    stage but the first halves the resolution."""
    if isinstance(depths, int):
        depths = [depths] * len(widths)
    for stage, (width, n) in enumerate(zip(widths, depths, strict=True)):
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            yield BlockPlan(in_ch, width, stride, stage, i)
            in_ch = width * expansion


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> L.Convolution2D:
    """3x3 convolution, padding 1, no bias."""
    return L.Convolution2D(in_ch, out_ch, 3, stride, 1, nobias=True, initialW=conv_init())


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> L.Convolution2D:
    """1x1 convolution, no padding, no bias."""
    return L.Convolution2D(in_ch, out_ch, 1, stride, 0, nobias=True, initialW=conv_init())


def bn(channels: int) -> L.BatchNormalization:
    """Batch normalization with Torch's eps and decay, scale initialised by the current scheme."""
    gamma = UnitUniform() if _scheme.bn_gamma == "uniform" else None
    return L.BatchNormalization(channels, eps=1e-5, decay=0.9, initial_gamma=gamma)


def zero_pad_shortcut(x: chainer.Variable, out_ch: int, stride: int) -> chainer.Variable:
    """Parameter-free shortcut ("option A"): sub-sample by ``stride``, append zero channels."""
    if stride == 1 and out_ch == x.shape[1]:
        return x
    return ZeroPadShortcut(out_ch, stride).apply((x,))[0]


class ZeroPadShortcut(chainer.function_node.FunctionNode):
    """Option A as one node: ``y[:, :C] = x[:, :, ::s, ::s]`` and ``y[:, C:] = 0``.

    The gradient is the adjoint: the first C channels of ``gy`` copied back to every
    s-th pixel, zeros elsewhere. One node instead of a slice plus a concatenation keeps
    the output in the memory layout of ``x`` and makes the backward pass a single
    strided copy.
    """

    def __init__(self, out_ch: int, stride: int) -> None:
        self.out_ch = out_ch
        self.stride = stride

    def forward(self, inputs: tuple) -> tuple:
        """Sub-sample ``x`` and append ``out_ch - C`` zero channels."""
        (x,) = inputs
        if self.out_ch < x.shape[1]:
            raise ValueError(f"option A cannot drop channels ({x.shape[1]} -> {self.out_ch})")
        xp = chainer.backend.get_array_module(x)
        sub = x[:, :, :: self.stride, :: self.stride]
        self.in_shape = x.shape
        y = xp.zeros_like(x, shape=(x.shape[0], self.out_ch) + sub.shape[2:])
        y[:, : x.shape[1]] = sub
        return (y,)

    def backward(self, indexes: tuple, grad_outputs: tuple) -> tuple:
        """Gradient with respect to ``x`` (itself differentiable)."""
        (gy,) = grad_outputs
        return (ZeroPadShortcutGrad(self.in_shape, self.stride).apply((gy,))[0],)


class ZeroPadShortcutGrad(chainer.function_node.FunctionNode):
    """Adjoint of :class:`ZeroPadShortcut` (its backward is ZeroPadShortcut again)."""

    def __init__(self, in_shape: tuple, stride: int) -> None:
        self.in_shape = in_shape
        self.stride = stride

    def forward(self, inputs: tuple) -> tuple:
        (gy,) = inputs
        xp = chainer.backend.get_array_module(gy)
        self.out_ch = gy.shape[1]
        gx = xp.zeros_like(gy, shape=self.in_shape)
        gx[:, :, :: self.stride, :: self.stride] = gy[:, : self.in_shape[1]]
        return (gx,)

    def backward(self, indexes: tuple, grad_outputs: tuple) -> tuple:
        (ggx,) = grad_outputs
        return (ZeroPadShortcut(self.out_ch, self.stride).apply((ggx,))[0],)


class ClassifierHead(chainer.Chain):
    """Global average pooling followed by a fully connected layer to the class scores."""

    def __init__(self, in_ch: int, n_classes: int = 10) -> None:
        super().__init__()
        with self.init_scope():
            self.fc = L.Linear(in_ch, n_classes)

    def forward(self, h: chainer.Variable) -> chainer.Variable:
        """Average each channel over space, then map to ``n_classes`` scores."""
        return self.fc(F.mean(h, axis=(2, 3)))


class PreActHead(chainer.Chain):
    """Final BN-ReLU of a pre-activation network, then :class:`ClassifierHead`."""

    def __init__(self, in_ch: int, n_classes: int = 10) -> None:
        super().__init__()
        with self.init_scope():
            self.bn = bn(in_ch)
            self.head = ClassifierHead(in_ch, n_classes)

    def forward(self, h: chainer.Variable) -> chainer.Variable:
        """BN, ReLU, global average pool, fully connected."""
        return self.head(F.relu(self.bn(h)))


def linear_decay_survival(index: int, total: int, p_last: float = 0.5) -> float:
    r"""Survival probability of block ``index`` (1-based) of ``total`` under the linear-decay rule,
    :math:`p_l = 1 - \frac{l}{L}(1 - p_L)` (stochastic depth, Huang et al. 2016, Eq. 4)."""
    if not 1 <= index <= total:
        raise ValueError(f"block index must be in 1..{total}, got {index}")
    return 1.0 - index / total * (1.0 - p_last)


def stochastic_depth(
    branch: Callable[[], chainer.Variable], survival: float
) -> chainer.Variable | None:
    r"""Stochastic-depth gate on a residual branch :math:`f_l` with survival probability :math:`p_l`.

    Training (``chainer.config.train``): with probability :math:`p_l` return ``branch()``;
    otherwise return ``None`` without computing the branch at all, so the block reduces to its
    shortcut and its parameters get no gradient. Test: return :math:`p_l \cdot f_l`, the branch
    scaled by its expected presence. One draw per call, i.e. per block per mini-batch.

    The draw decides host-side control flow, so it comes from ``numpy.random`` (seeded by
    ``chainer_nets.train --seed``) whether the arrays live on NumPy or CuPy: this avoids a
    device-to-host synchronisation per block. Models draw on the host only through
    :func:`host_uniform` and :func:`host_randint`.
    """
    if chainer.config.train:
        if survival < 1.0 and host_uniform() >= survival:
            return None
        return branch()
    h = branch()
    return h if survival == 1.0 else h * survival


def host_uniform(size: int | None = None) -> float | numpy.ndarray:
    """U(0, 1) draws on the host from ``numpy.random`` (one float, or an array of ``size``): for
    decisions that steer control flow, which need no device access."""
    if size is None:
        return float(numpy.random.random_sample())
    return numpy.random.random_sample(size)


def host_randint(high: int) -> int:
    """One integer in ``[0, high)`` on the host from ``numpy.random`` (control flow only)."""
    return int(numpy.random.randint(high))


def bernoulli_mask(like: chainer.Variable, p: float) -> chainer.types.NdArray:
    """A 0/1 mask of ``like``'s shape and dtype, 1 with probability ``p`` per entry, drawn with
    ``like``'s array module (on the device for CuPy arrays, in single precision there)."""
    xp = chainer.backend.get_array_module(like)
    if xp is numpy:
        u = numpy.random.random_sample(like.shape)  # the seeded global stream of the CPU runs
    else:
        u = xp.random.random_sample(like.shape, dtype=numpy.float32)
    return (u < p).astype(like.dtype)


class StagedNetwork(chainer.Chain):
    """A stem, a chain of blocks (``self.blocks``) and a head (``self.head``): the outline of
    every single-stream CIFAR residual network here; subclasses define :meth:`stem`."""

    def stem(self, x: chainer.Variable) -> chainer.Variable:
        """The layers before the first block."""
        raise NotImplementedError

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores (logits) for a batch of 3x32x32 images: head(blocks(stem(x)))."""
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)
