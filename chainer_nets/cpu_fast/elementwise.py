"""Element-wise functions between the convolutions (ReLU, its gradient, residual add),
split over the worker threads and keeping their operands' memory layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from chainer_nets.cpu_fast import workers
from chainer_nets.cpu_fast.pool import _POOL
from chainer_nets.cpu_fast.switch import _FLOATS, _ORIG, is_enabled
from chainer_nets.cpu_fast.workers import _WORKERS


def _elementwise_ok(*arrays: Any) -> bool:
    """Whether equal-shape, equal-dtype NumPy float arrays are worth splitting over threads."""
    a0 = arrays[0]
    return (
        is_enabled()
        and all(type(a) is np.ndarray for a in arrays)
        and a0.dtype in _FLOATS
        and a0.ndim >= 2
        and a0.size >= workers.PARALLEL_MIN_SIZE
        and all(a.shape == a0.shape and a.dtype == a0.dtype for a in arrays[1:])
        and len(_WORKERS.split(a0.shape[0])) > 1
    )


def _layout_source(*arrays: np.ndarray) -> np.ndarray:
    """The first operand without broadcast (zero) strides, whose memory order a result copies.

    A gradient arriving from a broadcast (e.g. the backward pass of a global average
    pooling) has zero strides; copying its order would turn the result NCHW and make every
    later fast-path call copy it back to channels-last.
    """
    for a in arrays:
        if all(st != 0 for st, n in zip(a.strides, a.shape, strict=True) if n > 1):
            return a
    return arrays[0]


def _relu_part(a: int, b: int, x: np.ndarray, y: np.ndarray) -> None:
    np.maximum(x[a:b], 0, out=y[a:b])


def _relu_grad_part(a: int, b: int, gy: np.ndarray, y: np.ndarray, gx: np.ndarray) -> None:
    np.multiply(gy[a:b], y[a:b] > 0, out=gx[a:b])


def _add_part(a: int, b: int, x0: np.ndarray, x1: np.ndarray, y: np.ndarray) -> None:
    np.add(x0[a:b], x1[a:b], out=y[a:b])


def _relu_forward_cpu(self: Any, inputs: tuple) -> tuple:
    """ReLU forward split over the worker threads (keeps the memory layout of x)."""
    (x,) = inputs
    if not _elementwise_ok(x):
        return _ORIG["relu_fwd"](self, inputs)
    y = _POOL.like(x)
    _WORKERS.run(_relu_part, x.shape[0], x, y)
    self.retain_outputs((0,))
    return (y,)


def _relu_grad_forward_cpu(self: Any, inputs: tuple) -> tuple:
    """ReLU gradient ``gy * (y > 0)`` split over the worker threads."""
    (gy,) = inputs
    if not _elementwise_ok(gy, self.b):
        return _ORIG["relu_grad_fwd"](self, inputs)
    gx = _POOL.like(_layout_source(self.b, gy))
    _WORKERS.run(_relu_grad_part, gy.shape[0], gy, self.b, gx)
    return (gx,)


def _add_forward(self: Any, inputs: tuple) -> tuple:
    """Element-wise sum of two equal-shape arrays split over the worker threads."""
    x0, x1 = inputs
    if not _elementwise_ok(x0, x1):
        return _ORIG["add_fwd"](self, inputs)
    y = _POOL.like(_layout_source(x0, x1))
    _WORKERS.run(_add_part, x0.shape[0], x0, x1, y)
    return (y,)
