"""A faster NumPy (CPU) path for Chainer's 2-D convolution and batch normalization.

Chainer 7's CPU convolution builds an ``(N, C, kh, kw, Ho, Wo)`` im2col buffer and
contracts it with ``numpy.tensordot``, which silently copies the buffer again to
make it 2-D; backward does the same twice more plus a ``col2im``. Most of a
training step is spent in those copies, not in the matrix products.

This module keeps the NCHW *shape* that every Chainer function expects, but lets
the arrays produced by the fast path carry channels-last (NHWC) *memory*: an
output is the ``(N, H, W, C)`` C-contiguous result of one GEMM, returned through
``.transpose(0, 3, 1, 2)`` as an NCHW-shaped view. NumPy's element-wise ufuncs
follow the memory order of their operands, so ReLU, additions and the gradients
flowing back keep that layout for free, and every convolution and batch
normalization sees its data as a 2-D ``(N*H*W, C)`` row matrix:

* convolution forward: zero-pad into an NHWC buffer, ``copyto`` from a 6-D
  ``as_strided`` window view into a contiguous ``(rows, kh*kw*C)`` im2col chunk,
  then a 2-D ``matmul`` with the reshaped weights into the output rows. Chunks
  of whole images (:data:`CHUNK_BYTES`) bound the buffer size; buffers are
  reused between calls because fresh 100 MB allocations cost page faults.
  1x1 convolutions skip im2col entirely (strided 1x1 only gathers).
* grad-weight: ``col.T @ gy`` accumulated over the same chunks (im2col rebuilt;
  keeping the forward buffers measured slower).
* grad-input: for stride 1 a forward convolution of ``gy`` with flipped,
  transposed weights (same im2col + GEMM path); otherwise ``gy @ W`` gives the
  column gradient, folded back by ``kh*kw`` strided slice-adds.
* groups: one batched ``matmul`` over groups; depthwise convolutions (one input
  channel per group) use ``kh*kw`` broadcast multiply-adds instead of GEMMs.
* batch normalization (training): per-channel reductions over the row matrix
  and fused scale/shift passes, reductions accumulated in float64 where the
  result feeds the statistics; test mode uses one multiply and one add.

Everything is dispatched automatically: :func:`install` replaces
``chainer.functions.convolution_2d`` (also as seen by ``L.Convolution2D``) with
a wrapper that picks :class:`FastConvolution2D` for supported NumPy inputs, and
wraps the generic batch-normalization implementation that Chainer's own
``BatchNormalization`` FunctionNode calls (so running statistics, links and
the Trainer are unchanged). CuPy/ChainerX arrays, dilation, ``cover_all``,
non-float dtypes, double backprop and anything else unsupported take Chainer's
own code. ``CHAINER_NETS_CPU_FAST=0`` disables it at install time;
``chainer.config.cpu_fast`` (or the :func:`enabled` context manager) toggles it
at run time.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import chainer
import numpy as np
from chainer import function_node
from chainer.functions.connection import convolution_2d as _conv_mod
from chainer.functions.normalization import batch_normalization as _bn_mod
from numpy.lib.stride_tricks import as_strided

__all__ = [
    "FastConvolution2D",
    "convolution_2d",
    "enabled",
    "install",
    "is_enabled",
    "is_installed",
    "release_buffers",
    "uninstall",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_ORIG: dict[str, Any] = {}

_SCRATCH = threading.local()


# ----------------------------------------------------------------------------
# switch
# ----------------------------------------------------------------------------


def is_enabled() -> bool:
    """Return whether the fast path is installed and switched on in this thread."""
    return bool(_ORIG) and bool(getattr(chainer.config, "cpu_fast", False))


@contextlib.contextmanager
def enabled(flag: bool = True) -> Iterator[None]:
    """Context manager that switches the fast path on or off (``chainer.config.cpu_fast``)."""
    with chainer.using_config("cpu_fast", bool(flag)):
        yield


def is_installed() -> bool:
    """Return whether :func:`install` has patched Chainer."""
    return bool(_ORIG)


# ----------------------------------------------------------------------------
# layout helpers
# ----------------------------------------------------------------------------


def _rows(a: np.ndarray) -> np.ndarray:
    """View (or, if the memory is not NHWC, copy) an NCHW-shaped array as ``(N*H*W, C)``."""
    t = a.transpose(0, 2, 3, 1)
    if not t.flags.c_contiguous:
        t = np.ascontiguousarray(t)
    return t.reshape(-1, a.shape[1])


def _nchw_view(rows: np.ndarray, n: int, h: int, w: int) -> np.ndarray:
    """Return the NCHW-shaped view of a C-contiguous ``(N*H*W, C)`` row matrix."""
    return rows.reshape(n, h, w, rows.shape[1]).transpose(0, 3, 1, 2)


def _empty_nhwc(n: int, c: int, h: int, w: int, dtype: Any) -> np.ndarray:
    """Allocate an NCHW-shaped array with NHWC memory."""
    return np.empty((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)


def _pad_nhwc(
    x: np.ndarray, ph: int, pw: int, hp: int, wp: int, scratch: bool = False
) -> np.ndarray:
    """Copy NCHW-shaped ``x`` into a zero-bordered NHWC buffer of spatial size ``hp x wp``.

    With ``scratch`` the buffer is a reused per-thread one whose zero border persists.
    """
    n, c, h, w = x.shape
    if scratch:
        xp, fresh = _scratch((n, hp, wp, c), x.dtype, tag=(ph, pw, h, w))
        if not fresh:
            xp[:, ph : ph + h, pw : pw + w, :] = x.transpose(0, 2, 3, 1)
            return xp
    else:
        xp = np.empty((n, hp, wp, c), dtype=x.dtype)
    if ph:
        xp[:, :ph] = 0
    if hp > ph + h:
        xp[:, ph + h :] = 0
    if pw:
        xp[:, ph : ph + h, :pw] = 0
    if wp > pw + w:
        xp[:, ph : ph + h, pw + w :] = 0
    xp[:, ph : ph + h, pw : pw + w, :] = x.transpose(0, 2, 3, 1)
    return xp


def _windows(xp: np.ndarray, kh: int, kw: int, sy: int, sx: int, ho: int, wo: int) -> np.ndarray:
    """Return the read-only ``(N, Ho, Wo, kh, kw, C)`` window view of a padded NHWC buffer."""
    s0, s1, s2, s3 = xp.strides
    shape = (xp.shape[0], ho, wo, kh, kw, xp.shape[3])
    return as_strided(xp, shape, (s0, s1 * sy, s2 * sx, s1, s2, s3), writeable=False)


class _Geom:
    """Shapes of one convolution: input, kernel, stride, padding and output sizes."""

    __slots__ = ("c", "co", "g", "h", "ho", "kh", "kw", "n", "ph", "pw", "sx", "sy", "w", "wo")

    def __init__(self, xs: tuple, ws: tuple, stride: tuple, pad: tuple, groups: int) -> None:
        self.n, self.c, self.h, self.w = xs
        self.co, _, self.kh, self.kw = ws
        self.sy, self.sx = stride
        self.ph, self.pw = pad
        self.g = groups
        self.ho = (self.h + 2 * self.ph - self.kh) // self.sy + 1
        self.wo = (self.w + 2 * self.pw - self.kw) // self.sx + 1

    @property
    def pointwise(self) -> bool:
        """True for 1x1 kernels without padding (no im2col needed)."""
        return self.kh == 1 and self.kw == 1 and self.ph == 0 and self.pw == 0

    @property
    def padded(self) -> tuple[int, int]:
        """Spatial size of a padded buffer holding the input and covering all windows."""
        hp = max((self.ho - 1) * self.sy + self.kh, self.h + self.ph)
        wp = max((self.wo - 1) * self.sx + self.kw, self.w + self.pw)
        return hp, wp


def _scratch(shape: tuple, dtype: Any, tag: Any = None) -> tuple[np.ndarray, bool]:
    """A reusable per-thread buffer for transient arrays (avoids page faults); (buf, fresh)."""
    cache = _SCRATCH.__dict__.setdefault("bufs", {})
    key = (shape, np.dtype(dtype).str, tag)
    buf = cache.get(key)
    if buf is not None:
        return buf, False
    if len(cache) >= 16:
        cache.clear()
    buf = cache[key] = np.empty(shape, dtype=dtype)
    return buf, True


#: Target size of one im2col chunk: the chunk is written and then read by the GEMM while it
#: is still in cache, instead of streaming a full ``kh*kw``-times-larger buffer through memory.
CHUNK_BYTES = int(float(os.environ.get("CHAINER_NETS_CPU_FAST_CHUNK_KB", "32768")) * 1024)


def _chunked_cols(x: np.ndarray, g: _Geom) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(row slice, im2col chunk)`` over groups of whole images (k x k kernels)."""
    hp, wp = g.padded
    xp = _pad_nhwc(x, g.ph, g.pw, hp, wp, scratch=True)
    win = _windows(xp, g.kh, g.kw, g.sy, g.sx, g.ho, g.wo)
    per = g.ho * g.wo
    k = g.kh * g.kw * g.c
    nb = int(min(g.n, max(1, CHUNK_BYTES // (per * k * x.itemsize))))
    buf = _scratch((nb, g.ho, g.wo, g.kh, g.kw, g.c), x.dtype, tag="chunk")[0]
    for n0 in range(0, g.n, nb):
        n1 = min(g.n, n0 + nb)
        cb = buf[: n1 - n0]
        np.copyto(cb, win[n0:n1])
        yield slice(n0 * per, n1 * per), cb.reshape(-1, k)


def release_buffers() -> None:
    """Free this thread's cached scratch buffers (they are re-created on demand)."""
    _SCRATCH.__dict__.pop("bufs", None)


def _im2col(x: np.ndarray, g: _Geom, scratch: bool = False) -> np.ndarray:
    """Return the contiguous ``(N*Ho*Wo, kh*kw*C)`` im2col matrix (a view for 1x1 convs).

    With ``scratch`` the matrix lives in a reused buffer and is only valid until the next
    scratch im2col of the same shape in this thread.
    """
    if g.pointwise:
        if g.sy != 1 or g.sx != 1:
            x = x[:, :, :: g.sy, :: g.sx]
        return _rows(x)
    hp, wp = g.padded
    xp = _pad_nhwc(x, g.ph, g.pw, hp, wp, scratch=True)
    shape = (g.n, g.ho, g.wo, g.kh, g.kw, g.c)
    col = _scratch(shape, x.dtype)[0] if scratch else np.empty(shape, dtype=x.dtype)
    np.copyto(col, _windows(xp, g.kh, g.kw, g.sy, g.sx, g.ho, g.wo))
    return col.reshape(g.n * g.ho * g.wo, g.kh * g.kw * g.c)


def _col2im(gcol: np.ndarray, g: _Geom) -> np.ndarray:
    """Fold an ``(N*Ho*Wo, kh*kw*C)`` column gradient back into an NCHW-shaped NHWC array."""
    n, c, h, w = g.n, g.c, g.h, g.w
    if g.pointwise:
        if g.sy == 1 and g.sx == 1:
            return _nchw_view(gcol, n, h, w)
        gx = np.zeros((n, h, w, c), dtype=gcol.dtype)
        gx[:, :: g.sy, :: g.sx, :] = gcol.reshape(n, g.ho, g.wo, c)
        return gx.transpose(0, 3, 1, 2)
    hp, wp = g.padded
    gxp = np.zeros((n, hp, wp, c), dtype=gcol.dtype)
    gc = gcol.reshape(n, g.ho, g.wo, g.kh, g.kw, c)
    ey, ex = g.sy * (g.ho - 1) + 1, g.sx * (g.wo - 1) + 1
    for i in range(g.kh):
        for j in range(g.kw):
            gxp[:, i : i + ey : g.sy, j : j + ex : g.sx, :] += gc[:, :, :, i, j, :]
    if g.ph or g.pw or hp != h or wp != w:
        gxp = np.ascontiguousarray(gxp[:, g.ph : g.ph + h, g.pw : g.pw + w, :])
    return gxp.transpose(0, 3, 1, 2)


# ----------------------------------------------------------------------------
# convolution kernels (NumPy arrays in, NumPy arrays out)
# ----------------------------------------------------------------------------


def _w_matrix(W: np.ndarray, g: _Geom) -> np.ndarray:
    """Weights as ``(G, kh*kw*Cg, Cog)`` matching the im2col column order (kh, kw, c)."""
    cog = g.co // g.g
    cg = g.c // g.g
    w = W.reshape(g.g, cog, cg, g.kh, g.kw).transpose(0, 3, 4, 2, 1)
    return np.ascontiguousarray(w).reshape(g.g, g.kh * g.kw * cg, cog)


def _grouped_cols(col: np.ndarray, g: _Geom) -> np.ndarray:
    """View an ``(M, kh*kw*C)`` im2col matrix as ``(G, M, kh*kw*Cg)`` (copying if needed)."""
    cg = g.c // g.g
    m = col.shape[0]
    c6 = col.reshape(m, g.kh, g.kw, g.g, cg).transpose(3, 0, 1, 2, 4)
    return np.ascontiguousarray(c6).reshape(g.g, m, g.kh * g.kw * cg)


def _depthwise(g: _Geom) -> bool:
    """True when every group has exactly one input channel (depthwise convolution)."""
    return g.g > 1 and g.g == g.c


def conv_forward(x: np.ndarray, W: np.ndarray, b: np.ndarray | None, g: _Geom) -> np.ndarray:
    """Compute an NCHW-shaped (NHWC-memory) convolution output on NumPy arrays."""
    return _forward_with_col(x, W, b, g, keep=False)[0]


def _forward_with_col(
    x: np.ndarray, W: np.ndarray, b: np.ndarray | None, g: _Geom, keep: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Convolution output plus the im2col matrix it used (None for depthwise).

    Unless ``keep``, the im2col matrix is a transient scratch buffer (do not hold on to it).
    """
    m = g.n * g.ho * g.wo
    col = None
    if _depthwise(g):
        y = _depthwise_forward(x, W, g)
    elif g.g == 1 and not keep and not g.pointwise:
        y = np.empty((m, g.co), dtype=x.dtype)
        wm = _w_matrix(W, g)[0]
        for rows, cb in _chunked_cols(x, g):
            np.matmul(cb, wm, out=y[rows])
    elif g.g == 1:
        col = _im2col(x, g, scratch=not keep)
        y = np.matmul(col, _w_matrix(W, g)[0])
    else:
        col = _im2col(x, g, scratch=not keep)
        y = np.matmul(_grouped_cols(col, g), _w_matrix(W, g))  # (G, M, Cog)
        y = np.ascontiguousarray(y.transpose(1, 0, 2)).reshape(m, g.co)
    if b is not None:
        y += b
    return _nchw_view(y, g.n, g.ho, g.wo), col


def conv_backward(
    x: np.ndarray,
    W: np.ndarray,
    gy: np.ndarray,
    g: _Geom,
    need_x: bool,
    need_w: bool,
    col: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """Return ``(gx, gW, gy_rows)`` for a convolution; gx is NCHW-shaped with NHWC memory.

    ``col`` is the forward pass's im2col matrix if it was kept (else it is rebuilt).
    """
    gyr = _rows(gy)
    gx = gw = None
    if _depthwise(g):
        return (*_depthwise_backward(x, W, gyr, g, need_x, need_w), gyr)
    wm = _w_matrix(W, g)
    if need_x and g.sy == 1 and g.sx == 1 and not g.pointwise and g.ph < g.kh and g.pw < g.kw:
        gx = _grad_input_transposed(gy, W, g)
    elif need_x:
        if g.g == 1:
            gcol = np.matmul(gyr, wm[0].T)
        else:
            cog = g.co // g.g
            gyg = gyr.reshape(-1, g.g, cog).transpose(1, 0, 2)
            gcg = np.matmul(gyg, wm.transpose(0, 2, 1))  # (G, M, kh*kw*Cg)
            cg = g.c // g.g
            gcol = gcg.reshape(g.g, -1, g.kh, g.kw, cg).transpose(1, 2, 3, 0, 4)
            gcol = np.ascontiguousarray(gcol).reshape(-1, g.kh * g.kw * g.c)
        gx = _col2im(gcol, g)
    if need_w and col is None and (g.g > 1 or g.pointwise):
        col = _im2col(x, g, scratch=True)
    if need_w:
        cg = g.c // g.g
        cog = g.co // g.g
        if g.g == 1 and not g.pointwise:
            gwm = np.zeros((g.kh * g.kw * g.c, g.co), dtype=x.dtype)
            tmp = np.empty_like(gwm)
            for rows, cb in _chunked_cols(x, g):
                gwm += np.matmul(cb.T, gyr[rows], out=tmp)
            gwm = gwm[None]
        elif g.g == 1:
            gwm = np.matmul(col.T, gyr)[None]
        else:
            colg = _grouped_cols(col, g)
            gyg = gyr.reshape(-1, g.g, cog).transpose(1, 0, 2)
            gwm = np.matmul(colg.transpose(0, 2, 1), gyg)  # (G, kh*kw*Cg, Cog)
        gw = gwm.reshape(g.g, g.kh, g.kw, cg, cog).transpose(0, 4, 3, 1, 2)
        gw = np.ascontiguousarray(gw).reshape(W.shape).astype(W.dtype, copy=False)
    return gx, gw, gyr


def _grad_input_transposed(gy: np.ndarray, W: np.ndarray, g: _Geom) -> np.ndarray:
    """Grad-input of a stride-1 convolution as a forward convolution of ``gy``.

    With flipped, in/out-swapped weights and padding ``k - 1 - p`` this reuses the
    contiguous im2col + GEMM path instead of a column gradient and ``kh*kw`` strided adds.
    """
    cog, cg = g.co // g.g, g.c // g.g
    wt = W.reshape(g.g, cog, cg, g.kh, g.kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    wt = np.ascontiguousarray(wt).reshape(g.c, cog, g.kh, g.kw)
    gt = _Geom(gy.shape, wt.shape, (1, 1), (g.kh - 1 - g.ph, g.kw - 1 - g.pw), g.g)
    assert (gt.ho, gt.wo) == (g.h, g.w)
    return conv_forward(gy, wt, None, gt)


def _depthwise_forward(x: np.ndarray, W: np.ndarray, g: _Geom) -> np.ndarray:
    """Depthwise convolution (G == C) by kh*kw broadcast multiply-adds; returns ``(M, Co)``."""
    mult = g.co // g.g
    hp, wp = g.padded
    xp = _pad_nhwc(x, g.ph, g.pw, hp, wp)
    win = _windows(xp, g.kh, g.kw, g.sy, g.sx, g.ho, g.wo)
    # output channel k*mult + r reads input channel k with filter W[k*mult + r, 0]
    wk = W.reshape(g.c, mult, g.kh, g.kw)
    y = np.zeros((g.n, g.ho, g.wo, g.c, mult), dtype=x.dtype)
    tmp = np.empty_like(y)
    for i in range(g.kh):
        for j in range(g.kw):
            np.multiply(win[:, :, :, i, j, :, None], wk[:, :, i, j], out=tmp)
            y += tmp
    return y.reshape(-1, g.co)


def _depthwise_backward(
    x: np.ndarray, W: np.ndarray, gyr: np.ndarray, g: _Geom, need_x: bool, need_w: bool
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Grad-input and grad-weight of :func:`_depthwise_forward`."""
    mult = g.co // g.g
    wk = W.reshape(g.c, mult, g.kh, g.kw)
    gy5 = gyr.reshape(g.n, g.ho, g.wo, g.c, mult)
    gx = gw = None
    if need_x:
        gcol = np.empty((g.n, g.ho, g.wo, g.kh, g.kw, g.c), dtype=gyr.dtype)
        for i in range(g.kh):
            for j in range(g.kw):
                np.einsum("nhwcr,cr->nhwc", gy5, wk[:, :, i, j], out=gcol[:, :, :, i, j, :])
        gx = _col2im(gcol.reshape(gyr.shape[0], -1), g)
    if need_w:
        hp, wp = g.padded
        xp = _pad_nhwc(x, g.ph, g.pw, hp, wp)
        win = _windows(xp, g.kh, g.kw, g.sy, g.sx, g.ho, g.wo)
        gw = np.empty((g.c, mult, g.kh, g.kw), dtype=W.dtype)
        for i in range(g.kh):
            for j in range(g.kw):
                gw[:, :, i, j] = np.einsum("nhwc,nhwcr->cr", win[:, :, :, i, j, :], gy5)
        gw = gw.reshape(W.shape)
    return gx, gw


# ----------------------------------------------------------------------------
# FunctionNode
# ----------------------------------------------------------------------------


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
        self._geom = _Geom(x.shape, W.shape, self.stride, self.pad, self.groups)
        return (_forward_with_col(x, W, b, self._geom, keep=False)[0],)

    def backward(self, indexes: tuple[int, ...], grad_outputs: tuple) -> tuple:
        """First-order gradients on the fast path; Chainer's graph when double backprop is on."""
        x, W = self.get_retained_inputs()
        (gy,) = grad_outputs
        if chainer.config.enable_backprop:
            return self._chainer_backward(indexes, x, W, gy)
        gx, gw, gyr = conv_backward(
            x.array, W.array, gy.array, self._geom, 0 in indexes, 1 in indexes
        )
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
        if min(st) >= 1 and min(pd) >= 0 and ho > 0 and wo > 0:
            args = (x, W) if b is None else (x, W, b)
            (y,) = FastConvolution2D(st, pd, groups).apply(args)
            return y
    return _ORIG["convolution_2d"](x, W, b, stride, pad, cover_all, **kwargs)


# ----------------------------------------------------------------------------
# batch normalization
# ----------------------------------------------------------------------------


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


def _channel_sum(rows: np.ndarray) -> np.ndarray:
    """Per-column float64 sum of a C-contiguous ``(M, C)`` matrix."""
    return _Wide(*rows.shape).sum(rows)


def _channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-column float64 dot product of two C-contiguous ``(M, C)`` matrices."""
    return _Wide(*a.shape).dot(a, b)


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
    if not _bn_supported(axis, gamma, x, x_layout, xp):
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
    m = rows.shape[0]
    dt = x.dtype
    wd = _Wide(*rows.shape)
    mean64 = wd.sum(rows) / m
    mean = mean64.astype(dt)
    xc = np.subtract(wd.view(rows), wd.vec(mean, dt))  # wide view of x - mean
    var64 = wd.dot(xc, xc) / m
    var = var64.astype(dt)
    inv_std = (1.0 / np.sqrt(var64 + eps)).astype(dt)
    xc *= wd.vec(gamma * inv_std, dt)
    xc += wd.vec(beta, dt)
    xc = xc.reshape(m, -1)
    if running_mean is not None:
        adjust = m / max(m - 1.0, 1.0)
        running_mean *= decay
        running_mean += (1 - decay) * mean
        running_var *= decay
        running_var += (1 - decay) * adjust * var
    return _nchw_view(xc, n, h, w), x_layout, running_mean, running_var, mean, var, inv_std, None


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
        _bn_supported(axis, gamma, x, x_layout, xp)
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
    dt = x.dtype
    wd = _Wide(*xr.shape)
    gyw = wd.view(gyr)
    xc = np.subtract(wd.view(xr), wd.vec(mean, dt))  # x - mean; x_hat = xc * inv_std
    gbeta = wd.sum(gyr)
    ggamma = wd.dot(gyw, xc) * inv_std
    # gx = k1 * gy + k2 * xc + k3, with k1 = gamma * inv_std
    k1 = gamma.astype(np.float64) * inv_std
    xc *= wd.vec(-k1 * ggamma * inv_std / m, dt)
    xc += wd.vec(-k1 * gbeta / m, dt)
    gx = np.multiply(gyw, wd.vec(k1, dt))
    gx += xc
    gx = gx.reshape(m, -1)
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
        wd = _Wide(*rows.shape)
        y = np.multiply(wd.view(rows), wd.vec(scale.ravel(), x.dtype))
        y += wd.vec(shift.ravel(), x.dtype)
        return _nchw_view(y.reshape(rows.shape), n, h, w)
    y = np.multiply(x, scale.astype(x.dtype))
    y += shift.astype(x.dtype)
    return y


# ----------------------------------------------------------------------------
# install / uninstall
# ----------------------------------------------------------------------------


def install(default: bool | None = None) -> None:
    """Patch Chainer so the fast path is chosen automatically for NumPy arrays (idempotent).

    ``default`` sets ``chainer.global_config.cpu_fast``; when None it is read from the
    environment variable ``CHAINER_NETS_CPU_FAST`` (``0``/``false``/``off`` disable it) on
    the first install only.
    """
    if _ORIG and default is None:
        return  # already installed: keep whatever the switch has been set to since
    if default is None:
        env = os.environ.get("CHAINER_NETS_CPU_FAST", "1").strip().lower()
        default = env not in ("0", "false", "off", "no")
    chainer.global_config.cpu_fast = bool(default)
    if _ORIG:
        return
    impl = _bn_mod.GeneralBatchNormalizationImpl
    _ORIG["convolution_2d"] = _conv_mod.convolution_2d
    _ORIG["F.convolution_2d"] = chainer.functions.convolution_2d
    _ORIG["bn_forward"] = impl.forward
    _ORIG["bn_backward"] = impl.backward
    _ORIG["apply_bn_fwd"] = _bn_mod._apply_bn_fwd
    _conv_mod.convolution_2d = convolution_2d
    chainer.functions.convolution_2d = convolution_2d
    impl.forward = _bn_forward
    impl.backward = _bn_backward
    _bn_mod._apply_bn_fwd = _apply_bn_fwd


def uninstall() -> None:
    """Restore Chainer's original functions."""
    if not _ORIG:
        return
    impl = _bn_mod.GeneralBatchNormalizationImpl
    _conv_mod.convolution_2d = _ORIG["convolution_2d"]
    chainer.functions.convolution_2d = _ORIG["F.convolution_2d"]
    impl.forward = _ORIG["bn_forward"]
    impl.backward = _ORIG["bn_backward"]
    _bn_mod._apply_bn_fwd = _ORIG["apply_bn_fwd"]
    _ORIG.clear()
