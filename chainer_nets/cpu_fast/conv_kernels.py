"""Convolution kernels on NumPy arrays: forward and gradients, ungrouped, grouped, depthwise.

NumPy arrays in, NumPy arrays out (no Chainer here): :func:`conv_forward` and
:func:`conv_backward` are what :class:`~chainer_nets.cpu_fast.conv.FastConvolution2D` calls.
"""

from __future__ import annotations

import numpy as np

from chainer_nets.cpu_fast.im2col import (
    _col2im,
    _im2col,
    _Pieces,
    _pointwise_rows,
    _RowPieces,
    _tap_rows,
    _use_rows,
)
from chainer_nets.cpu_fast.layout import _Geom, _nchw_view, _pad_nhwc, _rows, _windows
from chainer_nets.cpu_fast.pool import _POOL, _scratch
from chainer_nets.cpu_fast.workers import _WORKERS


def _rows_conv(
    x: np.ndarray, g: _Geom, w3: np.ndarray, a: int, b: int, y: np.ndarray, tag: str
) -> None:
    """Stride-1 convolution of images ``a:b`` into the ``(N*Ho*Wo, Co)`` rows ``y``.

    ``w3`` is the weight matrix split by kernel row: ``(kh, kw*C, Co)``.
    """
    per = g.ho * g.wo
    co = w3.shape[2]
    pieces = _RowPieces(x, g, a, b, tag)
    tmp = _scratch((pieces.nb, per, co), x.dtype, tag=("tap", tag))[0]
    for s, e, piece in pieces:
        out = y[s * per : e * per].reshape(e - s, per, co)
        np.matmul(_tap_rows(piece, 0, g), w3[0], out=out)
        for i in range(1, g.kh):
            t = tmp[: e - s]
            np.matmul(_tap_rows(piece, i, g), w3[i], out=t)
            out += t


def _rows_grad_w(x: np.ndarray, g: _Geom, gyr: np.ndarray, a: int, b: int, gw: np.ndarray) -> None:
    """Add the grad-weight of images ``a:b`` of a stride-1 convolution to ``gw`` (Co, kh*kw*C)."""
    per = g.ho * g.wo
    k3 = g.kw * g.c
    gw3 = gw.reshape(g.co, g.kh, k3)
    pieces = _RowPieces(x, g, a, b, "x")
    tmp = _scratch((pieces.nb, g.co, k3), x.dtype, tag="gw3")[0]
    for s, e, piece in pieces:
        gy3t = gyr[s * per : e * per].reshape(e - s, per, g.co).transpose(0, 2, 1)
        for i in range(g.kh):
            t = tmp[: e - s]
            np.matmul(gy3t, _tap_rows(piece, i, g), out=t)
            gw3[:, i] += t.sum(axis=0)


def _fwd_part(a: int, b: int, x: np.ndarray, wm: np.ndarray, g: _Geom, y: np.ndarray) -> None:
    """Forward rows of images ``a:b`` into ``y`` (ungrouped convolution)."""
    per = g.ho * g.wo
    if g.pointwise:
        np.matmul(_pointwise_rows(x, g, a, b), wm, out=y[a * per : b * per])
        return
    if _use_rows(g):
        _rows_conv(x, g, wm.reshape(g.kh, g.kw * g.c, g.co), a, b, y, "x")
        return
    for rows, col in _Pieces(x, g, a, b, wm.shape[0], "x"):
        np.matmul(col, wm, out=y[rows])


def _bwd_part(
    a: int,
    b: int,
    x: np.ndarray,
    gy: np.ndarray,
    gyr: np.ndarray,
    wm: np.ndarray,
    g: _Geom,
    gx: np.ndarray | None,
    gt: _Geom | None,
    wt: np.ndarray | None,
    need_w: bool,
) -> np.ndarray | None:
    """Gradients for images ``a:b`` (ungrouped): fills ``gx[a:b]``, returns this part's gW.

    ``gx`` is an ``(N, H, W, C)`` array or None; with ``gt``/``wt`` the grad-input is the
    forward convolution of ``gy`` by the flipped weights, else ``gy @ W.T`` folded back.
    """
    per = g.ho * g.wo
    k = wm.shape[0]
    # the grad-weight is built as (Co, kh*kw*C): turning that into Chainer's (Co, C, kh, kw)
    # is a cheap copy, unlike from (kh*kw*C, Co)
    gw = np.zeros((g.co, k), dtype=x.dtype) if need_w else None
    if g.pointwise:
        gyp = gyr[a * per : b * per]
        if need_w:
            np.matmul(gyp.T, _pointwise_rows(x, g, a, b), out=gw)
        if gx is not None:
            if g.sy == 1 and g.sx == 1:
                np.matmul(gyp, wm.T, out=gx[a:b].reshape(-1, g.c))
            else:
                gx[a:b] = 0
                gx[a:b, :: g.sy, :: g.sx, :] = np.matmul(gyp, wm.T).reshape(b - a, g.ho, g.wo, g.c)
        return gw
    if need_w and _use_rows(g):
        _rows_grad_w(x, g, gyr, a, b, gw)
    elif need_w:
        tmp = None
        for i, (rows, col) in enumerate(_Pieces(x, g, a, b, k, "x")):
            if i == 0:
                np.matmul(gyr[rows].T, col, out=gw)  # most small layers need one piece
                continue
            if tmp is None:
                tmp = np.empty_like(gw)
            gw += np.matmul(gyr[rows].T, col, out=tmp)
    if gx is None:
        return gw
    if gt is not None and _use_rows(gt):
        # grad-input of a stride-1 convolution: gt is stride 1 too
        wt3 = wt.reshape(gt.kh, gt.kw * gt.c, gt.co)
        _rows_conv(gy, gt, wt3, a, b, gx.reshape(-1, g.c), "gy")
        return gw
    if gt is not None:
        gxr = gx.reshape(-1, g.c)
        for rows, col in _Pieces(gy, gt, a, b, wt.shape[0], "gy"):
            np.matmul(col, wt, out=gxr[rows])
        return gw
    hp, wp = g.padded
    nb = int(min(b - a, max(1, _WORKERS.chunk_rows(per * k * x.itemsize))))
    ey, ex = g.sy * (g.ho - 1) + 1, g.sx * (g.wo - 1) + 1
    for s in range(a, b, nb):
        e = min(b, s + nb)
        gcol = np.matmul(gyr[s * per : e * per], wm.T).reshape(e - s, g.ho, g.wo, g.kh, g.kw, g.c)
        gxp = _scratch((nb, hp, wp, g.c), x.dtype, tag="col2im")[0][: e - s]
        gxp.fill(0)
        for i in range(g.kh):
            for j in range(g.kw):
                gxp[:, i : i + ey : g.sy, j : j + ex : g.sx, :] += gcol[:, :, :, i, j, :]
        gx[s:e] = gxp[:, g.ph : g.ph + g.h, g.pw : g.pw + g.w, :]
    return gw


#: Convolutions with fewer output rows (``N*Ho*Wo``) than this are not split over the
#: workers: each worker would stream the whole weight matrix for a handful of rows, so one
#: call with NumPy's BLAS as configured (it splits the GEMM itself) is faster.
DENSE_MIN_ROWS = 2048


def _few_rows(g: _Geom) -> bool:
    """Whether a convolution is too short (in output rows) to split over the workers."""
    return g.n * g.ho * g.wo < DENSE_MIN_ROWS


def _conv_forward_dense(x: np.ndarray, wm: np.ndarray, g: _Geom) -> np.ndarray:
    """Ungrouped convolution forward as ``(M, Co)`` rows, parallel over images.

    ``wm`` is the ``(kh*kw*C, Co)`` weight matrix (:func:`_w_matrix`).
    """
    y = _POOL.empty((g.n * g.ho * g.wo, g.co), x.dtype)
    if _few_rows(g):
        _fwd_part(0, g.n, x, wm, g, y)
    else:
        _WORKERS.run(_fwd_part, g.n, x, wm, g, y)
    return y


def _conv_backward_dense(
    x: np.ndarray,
    W: np.ndarray,
    gy: np.ndarray,
    gyr: np.ndarray,
    g: _Geom,
    need_x: bool,
    need_w: bool,
    wm: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Ungrouped convolution gradients ``(gx NCHW-shaped NHWC memory, gW)``, parallel.

    ``wm`` is the forward pass's weight matrix if it kept it (else it is rebuilt).
    """
    wm = _w_matrix(W, g)[0] if wm is None else wm
    gx = gt = wt = None
    if need_x:
        gx = _POOL.empty((g.n, g.h, g.w, g.c), x.dtype)
        if g.sy == 1 and g.sx == 1 and not g.pointwise and g.ph < g.kh and g.pw < g.kw:
            # stride 1: grad-input is the convolution of gy by the flipped, transposed kernel;
            # worth its weight transpose only on the kernel-width path (for small maps the
            # column gradient folded back by slice-adds is cheaper)
            wf = W.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
            gt = _Geom(gy.shape, wf.shape, (1, 1), (g.kh - 1 - g.ph, g.kw - 1 - g.pw), 1)
            assert (gt.ho, gt.wo) == (g.h, g.w)
            if _use_rows(gt):
                wt = _w_matrix(wf, gt)[0]
            else:
                gt = None
    args = (x, gy, gyr, wm, g, gx, gt, wt, need_w)
    parts = [_bwd_part(0, g.n, *args)] if _few_rows(g) else _WORKERS.run(_bwd_part, g.n, *args)
    gw = None
    if need_w:
        gwm = parts[0]
        for p in parts[1:]:
            gwm += p
        gw = gwm.reshape(g.co, g.kh, g.kw, g.c).transpose(0, 3, 1, 2)
        gw = np.ascontiguousarray(gw).astype(W.dtype, copy=False)
    return (None if gx is None else gx.transpose(0, 3, 1, 2)), gw


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


def conv_forward(
    x: np.ndarray, W: np.ndarray, b: np.ndarray | None, g: _Geom, wm: np.ndarray | None = None
) -> np.ndarray:
    """Compute an NCHW-shaped (NHWC-memory) convolution output on NumPy arrays.

    ``wm``: the ungrouped weight matrix ``_w_matrix(W, g)[0]`` if the caller has it.
    """
    m = g.n * g.ho * g.wo
    if g.g == 1:
        y = _conv_forward_dense(x, _w_matrix(W, g)[0] if wm is None else wm, g)
    elif _depthwise(g):
        y = _depthwise_forward(x, W, g)
    else:
        col = _im2col(x, g)
        y = np.matmul(_grouped_cols(col, g), _w_matrix(W, g))  # (G, M, Cog)
        y = np.ascontiguousarray(y.transpose(1, 0, 2)).reshape(m, g.co)
    if b is not None:
        y += b
    return _nchw_view(y, g.n, g.ho, g.wo)


def conv_backward(
    x: np.ndarray,
    W: np.ndarray,
    gy: np.ndarray,
    g: _Geom,
    need_x: bool,
    need_w: bool,
    wm: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """Return ``(gx, gW, gy_rows)`` for a convolution; gx is NCHW-shaped with NHWC memory."""
    gyr = _rows(gy)
    if g.g == 1:
        return (*_conv_backward_dense(x, W, gy, gyr, g, need_x, need_w, wm), gyr)
    if _depthwise(g):
        return (*_depthwise_backward(x, W, gyr, g, need_x, need_w), gyr)
    gx = gw = None
    wm = _w_matrix(W, g)
    cg = g.c // g.g
    cog = g.co // g.g
    gyg = gyr.reshape(-1, g.g, cog).transpose(1, 0, 2)
    if need_x:
        gcg = np.matmul(gyg, wm.transpose(0, 2, 1))  # (G, M, kh*kw*Cg)
        gcol = gcg.reshape(g.g, -1, g.kh, g.kw, cg).transpose(1, 2, 3, 0, 4)
        gx = _col2im(np.ascontiguousarray(gcol).reshape(-1, g.kh * g.kw * g.c), g)
    if need_w:
        colg = _grouped_cols(_im2col(x, g), g)
        gwm = np.matmul(colg.transpose(0, 2, 1), gyg)  # (G, kh*kw*Cg, Cog)
        gw = gwm.reshape(g.g, g.kh, g.kw, cg, cog).transpose(0, 4, 3, 1, 2)
        gw = np.ascontiguousarray(gw).reshape(W.shape).astype(W.dtype, copy=False)
    return gx, gw, gyr


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
