"""Pieces several papers share: conv/BN constructors, shortcuts, classifier heads.

Conventions used by every model in the package:

* Convolutions feeding a batch normalization have no bias, and are initialised
  with He's normal initialisation counted over the output fan
  (:math:`\\mathcal{N}(0, 2/(k^2 C_{out}))`, as in fb.resnet.torch and the WRN code).
  :func:`conv_init` is the one place this is chosen.
* Batch normalization uses Torch's defaults (eps 1e-5, running-average decay 0.9),
  which the papers' reference code used.
"""

from __future__ import annotations

from collections.abc import Callable

import chainer
import chainer.functions as F
import chainer.links as L
import numpy
from chainer import initializers


def conv_init() -> initializers.HeNormal:
    """He-normal initializer over the output fan, used by every convolution."""
    return initializers.HeNormal(fan_option="fan_out")


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> L.Convolution2D:
    """3x3 convolution, padding 1, no bias."""
    return L.Convolution2D(in_ch, out_ch, 3, stride, 1, nobias=True, initialW=conv_init())


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> L.Convolution2D:
    """1x1 convolution, no padding, no bias."""
    return L.Convolution2D(in_ch, out_ch, 1, stride, 0, nobias=True, initialW=conv_init())


def bn(channels: int) -> L.BatchNormalization:
    """Batch normalization with Torch's eps and decay."""
    return L.BatchNormalization(channels, eps=1e-5, decay=0.9)


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
    device-to-host synchronisation per block.
    """
    if chainer.config.train:
        if survival < 1.0 and numpy.random.random_sample() >= survival:
            return None
        return branch()
    h = branch()
    return h if survival == 1.0 else h * survival
