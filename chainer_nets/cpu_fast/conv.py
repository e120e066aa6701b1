"""The fast convolution as a Chainer FunctionNode, and the ``F.convolution_2d`` drop-in.

:func:`convolution_2d` takes supported NumPy calls; everything else (CuPy/ChainerX arrays,
dilation, ``cover_all``, mixed dtypes, a static schedule being recorded, and short
weight-bound convolutions where Chainer's own is faster: ``conv_kernels.weight_bound``) goes
to Chainer's own function.
"""

from __future__ import annotations

from typing import Any

import chainer
import numpy as np
from chainer import function_node
from chainer.functions.connection import convolution_2d as _conv_mod

from chainer_nets.cpu_fast.conv_kernels import _w_matrix, conv_backward, conv_forward, weight_bound
from chainer_nets.cpu_fast.layout import _Geom
from chainer_nets.cpu_fast.switch import _FLOATS, _ORIG, is_enabled


class FastConvolution2D(function_node.FunctionNode):
    """2-D convolution on NumPy arrays via one contiguous im2col buffer and 2-D GEMMs."""

    def __init__(self, stride: tuple[int, int], pad: tuple[int, int], groups: int = 1) -> None:
        self.stride = stride
        self.pad = pad
        self.groups = groups

    def forward(self, inputs: tuple) -> tuple[np.ndarray]:
        """Compute the convolution output (NCHW shape, NHWC memory)."""
        self.retain_inputs((0, 1))
        x, W = inputs[:2]
        b = inputs[2] if len(inputs) == 3 else None
        g = self._geom = _Geom(x.shape, W.shape, self.stride, self.pad, self.groups)
        # the transposed weight matrix is kept for the backward pass (W does not change in
        # between); rebuilding it costs a strided copy of the weights (~4 ms for 512x512x3x3)
        self._wm = _w_matrix(W, g)[0] if self.groups == 1 else None
        return (conv_forward(x, W, b, g, self._wm),)

    def backward(self, indexes: tuple[int, ...], grad_outputs: tuple) -> tuple:
        """First-order gradients on the fast path; Chainer's graph when double backprop is on."""
        x, W = self.get_retained_inputs()
        (gy,) = grad_outputs
        if chainer.config.enable_backprop:
            return self._chainer_backward(indexes, x, W, gy)
        gx, gw, gyr = conv_backward(
            x.array, W.array, gy.array, self._geom, 0 in indexes, 1 in indexes, self._wm
        )
        self._wm = None
        ret = []
        if 0 in indexes:
            ret.append(chainer.Variable(gx.astype(x.dtype, copy=False), requires_grad=False))
        if 1 in indexes:
            ret.append(chainer.Variable(gw, requires_grad=False))
        if 2 in indexes:
            gb = gyr.sum(axis=0, dtype=np.float64).astype(gy.dtype)
            ret.append(chainer.Variable(gb, requires_grad=False))
        return tuple(ret)

    def _chainer_backward(
        self, indexes: tuple[int, ...], x: chainer.Variable, W: chainer.Variable, gy: Any
    ) -> tuple:
        """Differentiable backward built from Chainer's own functions (double backprop)."""
        ref = _conv_mod.Convolution2DFunction(self.stride, self.pad, groups=self.groups)
        ret = []
        if 0 in indexes:
            ret.append(
                chainer.functions.deconvolution_2d(
                    gy,
                    W,
                    stride=self.stride,
                    pad=self.pad,
                    outsize=x.shape[2:],
                    groups=self.groups,
                )
            )
        if 1 in indexes:
            (gw,) = _conv_mod.Convolution2DGradW(ref, W.shape, W.dtype, None).apply((x, gy))
            ret.append(gw)
        if 2 in indexes:
            ret.append(chainer.functions.sum(gy, axis=(0, 2, 3)))
        return tuple(ret)


def _pair(v: Any) -> tuple[int, int]:
    """Normalize an int or pair to a pair of ints."""
    if hasattr(v, "__getitem__"):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _raw(v: Any) -> Any:
    """Return the array held by a Variable (or the object itself)."""
    return v.array if isinstance(v, chainer.Variable) else v


def _conv_supported(x: Any, W: Any, b: Any, cover_all: bool, kwargs: dict) -> int | None:
    """Return the group count if the fast path supports this call, else None."""
    if not is_enabled() or cover_all:
        return None
    extra = set(kwargs) - {"dilate", "groups", "cudnn_fast"}
    if extra or kwargs.get("cudnn_fast", False) or _pair(kwargs.get("dilate", 1)) != (1, 1):
        return None
    xa, wa, ba = _raw(x), _raw(W), _raw(b)
    if type(xa) is not np.ndarray or type(wa) is not np.ndarray:
        return None
    if b is not None and type(ba) is not np.ndarray:
        return None
    if xa.ndim != 4 or wa.ndim != 4 or xa.dtype not in _FLOATS or wa.dtype != xa.dtype:
        return None
    if b is not None and (ba.dtype != xa.dtype or ba.shape != (wa.shape[0],)):
        return None
    groups = int(kwargs.get("groups", 1))
    if groups < 1 or wa.shape[0] % groups or xa.shape[1] != wa.shape[1] * groups:
        return None
    if isinstance(x, chainer.Variable) and x.layout is not None:
        return None
    return groups


def convolution_2d(
    x: Any, W: Any, b: Any = None, stride: Any = 1, pad: Any = 0, cover_all: bool = False, **kwargs
) -> chainer.Variable:
    """Drop-in for ``F.convolution_2d`` that uses the fast path on supported NumPy inputs."""
    groups = _conv_supported(x, W, b, cover_all, kwargs)
    if groups is not None:
        st, pd = _pair(stride), _pair(pad)
        xs, ws = _raw(x).shape, _raw(W).shape
        ho = (xs[2] + 2 * pd[0] - ws[2]) // st[0] + 1
        wo = (xs[3] + 2 * pd[1] - ws[3]) // st[1] + 1
        k = ws[1] * ws[2] * ws[3]
        if (
            min(st) >= 1
            and min(pd) >= 0
            and ho > 0
            and wo > 0
            and not weight_bound(xs[0], ho, wo, k, groups)
        ):
            args = (x, W) if b is None else (x, W, b)
            (y,) = FastConvolution2D(st, pd, groups).apply(args)
            return y
    return _ORIG["convolution_2d"](x, W, b, stride, pad, cover_all, **kwargs)
