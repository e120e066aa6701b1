"""Batch normalization on the row matrix: float64 statistics merged across blocks and workers.

Replaces the generic implementation Chainer's own ``BatchNormalization`` FunctionNode calls
(training forward and backward) and its inference-mode scale/shift.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import numpy as np

from chainer_nets.cpu_fast.layout import _nchw_view, _rows
from chainer_nets.cpu_fast.pool import _POOL
from chainer_nets.cpu_fast.switch import _FLOATS, _ORIG, is_enabled
from chainer_nets.cpu_fast.workers import _WORKERS


def _generic_impl(self: Any) -> bool:
    """True for Chainer's own generic implementation; a subclass (ChainerMN's synchronised BN
    computes global statistics in its overridden methods) keeps Chainer's code."""
    from chainer.functions.normalization.batch_normalization import (
        GeneralBatchNormalizationImpl,
    )

    return type(self) is GeneralBatchNormalizationImpl


def _bn_supported(axis: Any, gamma: Any, x: Any, x_layout: Any, xp: Any) -> bool:
    """Whether the generic Chainer BN call can take the fast path."""
    return (
        is_enabled()
        and xp is np
        and type(x) is np.ndarray
        and type(gamma) is np.ndarray
        and x.ndim == 4
        and gamma.ndim == 1
        and tuple(axis) == (0, 2, 3)
        and x_layout is None
        and x.dtype in _FLOATS
        and gamma.dtype == x.dtype
    )


class _Wide:
    """A ``(M, C)`` row matrix seen as ``(M / r, r * C)`` so NumPy's inner loops run long.

    Broadcasting a C-vector over ``(M, C)`` with small C (16 in ResNet-20) makes NumPy run
    M inner loops of length C; the wide view runs M / r loops of length r * C (>= 1024)
    against the vector tiled r times, which is several times faster.
    """

    def __init__(self, m: int, c: int) -> None:
        r = 1
        while r * c < 1024 and m % (2 * r) == 0:
            r *= 2
        self.m, self.c, self.r = m, c, r

    def view(self, rows: np.ndarray) -> np.ndarray:
        """The wide view of a C-contiguous ``(M, C)`` matrix."""
        return rows.reshape(self.m // self.r, self.r * self.c)

    def vec(self, v: np.ndarray, dtype: Any) -> np.ndarray:
        """A per-channel vector tiled to the wide row length."""
        return np.tile(np.asarray(v, dtype=dtype), self.r)

    def fold(self, w: np.ndarray) -> np.ndarray:
        """Sum a wide-row vector back to per-channel float64 values."""
        return w.reshape(self.r, self.c).sum(axis=0, dtype=np.float64)

    def _blocks(self, w: np.ndarray) -> tuple[np.ndarray, bool]:
        """Split the wide rows into blocks of 64 for float32 partial sums (if they divide)."""
        rows = w.shape[0]
        if w.dtype == np.float64 or rows % 64 or rows < 128:
            return w, False
        return w.reshape(rows // 64, 64, w.shape[1]), True

    def sum(self, rows: np.ndarray) -> np.ndarray:
        """Per-channel float64 sum (float32 partial sums of 64 rows)."""
        w, blocked = self._blocks(self.view(rows))
        if blocked:
            w = w.sum(axis=1)
        return self.fold(w.sum(axis=0, dtype=np.float64))

    def dot(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per-channel float64 dot product of two row matrices."""
        wa, blocked = self._blocks(self.view(a))
        wb, _ = self._blocks(self.view(b))
        if blocked:
            part = np.einsum("kij,kij->kj", wa, wb)
        else:
            part = np.einsum("ij,ij->j", wa, wb)[None]
        return self.fold(part.sum(axis=0, dtype=np.float64))


#: Bytes of one batch-normalization block (larger blocks measured faster: fewer Python-level
#: calls; a worker's whole slice of a ResNet-20 stage-1 activation is 4 MB).
BN_BLOCK_BYTES = 4 << 20


def _blocks_of(a: int, b: int, per: int, c: int, itemsize: int) -> Iterator[slice]:
    """Row slices of images ``a:b`` (``per`` rows each) of about :data:`BN_BLOCK_BYTES`."""
    step = max(64, BN_BLOCK_BYTES // (c * itemsize) // 64 * 64)
    stop = b * per
    for r in range(a * per, stop, step):
        yield slice(r, min(stop, r + step))


def _chan_merge(p: tuple, q: tuple) -> tuple:
    """Merge (count, mean, M2) statistics of two row sets (Chan et al.'s parallel variance)."""
    na, ma, m2a = p
    nb, mb, m2b = q
    n = na + nb
    d = mb - ma
    return n, ma + d * (nb / n), m2a + m2b + d * d * (na * nb / n)


def _bn_stats_part(a: int, b: int, rows: np.ndarray, per: int) -> tuple:
    """(count, float64 mean, float64 sum of squared deviations) per channel of images a:b."""
    c = rows.shape[1]
    acc = None
    for sl in _blocks_of(a, b, per, c, rows.itemsize):
        blk = rows[sl]
        wd = _Wide(*blk.shape)
        mu = wd.sum(blk) / blk.shape[0]
        t = np.subtract(wd.view(blk), wd.vec(mu, blk.dtype))
        st = (blk.shape[0], mu, wd.dot(t, t))
        acc = st if acc is None else _chan_merge(acc, st)
    return acc


def _bn_grad_stats_part(
    a: int, b: int, per: int, xr: np.ndarray, gyr: np.ndarray, mean: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """float64 per-channel ``sum(gy)`` and ``sum(gy * (x - mean))`` over images a:b."""
    c = xr.shape[1]
    s1 = np.zeros(c)
    s2 = np.zeros(c)
    for sl in _blocks_of(a, b, per, c, xr.itemsize):
        xb, gb = xr[sl], gyr[sl]
        wd = _Wide(*xb.shape)
        t = np.subtract(wd.view(xb), wd.vec(mean, xb.dtype))
        s1 += wd.sum(gb)
        s2 += wd.dot(gb, t)
    return s1, s2


def _affine_part(a: int, b: int, per: int, out: np.ndarray, *terms: tuple) -> None:
    """``out[rows] = sum(src * k (+ shift))`` per channel over the rows of images a:b.

    Each term is ``(src rows, per-channel scale, per-channel shift or None)``.
    """
    c = out.shape[1]
    tmp = None
    for sl in _blocks_of(a, b, per, c, out.itemsize):
        ob = out[sl]
        wd = _Wide(*ob.shape)
        ow = wd.view(ob)
        for i, (src, k, shift) in enumerate(terms):
            sw = wd.view(src[sl])
            if i == 0:
                np.multiply(sw, wd.vec(k, out.dtype), out=ow)
            else:
                if tmp is None or tmp.shape != ow.shape:
                    tmp = np.empty_like(ow)
                np.multiply(sw, wd.vec(k, out.dtype), out=tmp)
                ow += tmp
            if shift is not None:
                ow += wd.vec(shift, out.dtype)


def _bn_forward(
    self: Any,
    axis: Any,
    gamma: Any,
    x: Any,
    x_layout: Any,
    xp: Any,
    expander: Any,
    beta: Any,
    eps: float,
    decay: float,
    running_mean: Any,
    running_var: Any,
) -> tuple:
    """Training-mode batch normalization on the row matrix (replaces the generic impl)."""
    if not (_generic_impl(self) and _bn_supported(axis, gamma, x, x_layout, xp)):
        return _ORIG["bn_forward"](
            self,
            axis,
            gamma,
            x,
            x_layout,
            xp,
            expander,
            beta,
            eps,
            decay,
            running_mean,
            running_var,
        )
    n, _, h, w = x.shape
    rows = _rows(x)
    m, c = rows.shape
    dt = x.dtype
    per = h * w
    stats = _WORKERS.run_sized(_bn_stats_part, n, rows.size, rows, per)
    _, mean64, m2 = functools.reduce(_chan_merge, stats)
    var64 = m2 / m
    mean = mean64.astype(dt)
    var = var64.astype(dt)
    inv64 = 1.0 / np.sqrt(var64 + eps)
    inv_std = inv64.astype(dt)
    scale = gamma.astype(np.float64) * inv64
    shift = beta.astype(np.float64) - mean64 * scale
    y = _POOL.like(rows)
    _WORKERS.run_sized(_affine_part, n, y.size, per, y, (rows, scale, shift))
    if running_mean is not None:
        adjust = m / max(m - 1.0, 1.0)
        running_mean *= decay
        running_mean += (1 - decay) * mean
        running_var *= decay
        running_var += (1 - decay) * adjust * var
    return _nchw_view(y, n, h, w), x_layout, running_mean, running_var, mean, var, inv_std, None


def _bn_backward(
    self: Any,
    axis: Any,
    gamma: Any,
    gy: Any,
    x: Any,
    x_layout: Any,
    xp: Any,
    expander: Any,
    mean: Any,
    inv_std: Any,
    eps: float,
    var: Any,
    forward_data: Any,
) -> tuple:
    """Batch-normalization gradients on the row matrix (replaces the generic impl)."""
    if not (
        _generic_impl(self)
        and _bn_supported(axis, gamma, x, x_layout, xp)
        and type(gy) is np.ndarray
        and gy.dtype == x.dtype
        and mean.dtype == x.dtype
    ):
        return _ORIG["bn_backward"](
            self, axis, gamma, gy, x, x_layout, xp, expander, mean, inv_std, eps, var, forward_data
        )
    n, _, h, w = x.shape
    xr = _rows(x)
    gyr = _rows(gy)
    m = xr.shape[0]
    per = h * w
    mean64 = mean.astype(np.float64)
    inv64 = inv_std.astype(np.float64)
    sums = _WORKERS.run_sized(_bn_grad_stats_part, n, xr.size, per, xr, gyr, mean)
    gbeta = sum(p[0] for p in sums)
    ggamma = sum(p[1] for p in sums) * inv64
    # gx = k1 * gy + k2 * (x - mean) + k3 = k1 * gy + k2 * x + (k3 - k2 * mean)
    k1 = gamma.astype(np.float64) * inv64
    k2 = -k1 * ggamma * inv64 / m
    k3 = -k1 * gbeta / m - k2 * mean64
    gx = _POOL.like(gyr)
    _WORKERS.run_sized(_affine_part, n, gx.size, per, gx, (gyr, k1, None), (xr, k2, k3))
    return _nchw_view(gx, n, h, w), None, ggamma.astype(gamma.dtype), gbeta.astype(gamma.dtype)


def _apply_bn_fwd(xp: Any, x: Any, mean: Any, inv_std: Any, gamma: Any, beta: Any) -> Any:
    """Fused scale/shift for Chainer's inference-mode BN (keeps the memory layout of x)."""
    if not (is_enabled() and xp is np and type(x) is np.ndarray and x.dtype in _FLOATS):
        return _ORIG["apply_bn_fwd"](xp, x, mean, inv_std, gamma, beta)
    scale = inv_std * gamma
    shift = beta - mean * scale
    if x.ndim == 4 and scale.shape == (1, x.shape[1], 1, 1) and shift.shape == scale.shape:
        n, c, h, w = x.shape
        rows = _rows(x)  # a free view for NHWC memory (what the fast convolution produces)
        y = _POOL.like(rows)
        _WORKERS.run_sized(_affine_part, n, y.size, h * w, y, (rows, scale.ravel(), shift.ravel()))
        return _nchw_view(y, n, h, w)
    y = np.multiply(x, scale.astype(x.dtype))
    y += shift.astype(x.dtype)
    return y
