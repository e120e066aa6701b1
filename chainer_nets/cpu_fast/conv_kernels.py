"""Convolution kernels on NumPy arrays: forward and gradients, ungrouped, grouped, depthwise.

NumPy arrays in, NumPy arrays out (no Chainer here): :func:`conv_forward` and
:func:`conv_backward` are what :class:`~chainer_nets.cpu_fast.conv.FastConvolution2D` calls.
"""

from __future__ import annotations

import numpy as np

from chainer_nets.cpu_fast.im2col import (
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
    if _use_rows(g, not _few_rows(g)):
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
    split = not _few_rows(g)
    if need_w and _use_rows(g, split):
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
    if gt is not None and _use_rows(gt, split):
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


#: An ungrouped convolution too short to split whose weight matrix has more than this many
#: times as many rows (``kh*kw*C``) as the convolution has output rows is left to Chainer's
#: own function (:func:`weight_bound`): its time goes into weight-sized copies, and the fast
#: path makes two that Chainer's does not (the weights into the column order, the weight
#: gradient back). Measured at batch 16 with 2 threads, 512 channels on 2x2 maps: 20 ms fast,
#: 12 ms Chainer's; on 8x8 maps (ratio 4.5) the fast path still won, 40 ms vs 53 ms.
WEIGHT_BOUND_RATIO = 8


def weight_bound(n: int, ho: int, wo: int, k: int, groups: int) -> bool:
    """Whether a convolution (``n`` images, ``ho x wo`` outputs, ``k = kh*kw*C``) is weight-bound:
    ungrouped, not split over the workers, and with ``k > WEIGHT_BOUND_RATIO * n*ho*wo``."""
    rows = n * ho * wo
    return groups == 1 and rows < DENSE_MIN_ROWS and k > WEIGHT_BOUND_RATIO * rows


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
            if _use_rows(gt, not _few_rows(g)):
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
    else:
        y = _POOL.empty((m, g.co), x.dtype)
        part, w = (
            (_depthwise_fwd_part, W) if _depthwise(g) else (_grouped_fwd_part, _w_matrix(W, g))
        )
        if _few_rows(g):
            part(0, g.n, x, w, g, y)
        else:
            _WORKERS.run(part, g.n, x, w, g, y)
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
    gx = _POOL.empty((g.n, g.h, g.w, g.c), x.dtype) if need_x else None
    if _depthwise(g):
        part, args = _depthwise_bwd_part, (x, W, gyr, g, gx, need_w)
    else:
        part, args = _grouped_bwd_part, (x, gyr, _w_matrix(W, g), g, gx, need_w)
    parts = [part(0, g.n, *args)] if _few_rows(g) else _WORKERS.run(part, g.n, *args)
    gw = None
    if need_w:
        gw = parts[0]
        for p in parts[1:]:
            gw += p
        if not _depthwise(g):  # (G, Cog, kh*kw*Cg) -> (Co, Cg, kh, kw)
            cog, cg = g.co // g.g, g.c // g.g
            gw = gw.reshape(g.g, cog, g.kh, g.kw, cg).transpose(0, 1, 4, 2, 3)
        gw = np.ascontiguousarray(gw).reshape(W.shape).astype(W.dtype, copy=False)
    return (None if gx is None else gx.transpose(0, 3, 1, 2)), gw, gyr


def _grouped_fwd_part(
    a: int, b: int, x: np.ndarray, wg: np.ndarray, g: _Geom, y: np.ndarray
) -> None:
    """Grouped convolution of images ``a:b`` into the ``(N*Ho*Wo, Co)`` rows ``y``.

    ``wg`` is :func:`_w_matrix`'s ``(G, kh*kw*Cg, Cog)``; each piece is one batched matmul
    over the groups, reading the group-major im2col and writing the group's output columns
    in place (no copies of operands or results).
    """
    ng, kk, cog = wg.shape
    for rows, col in _Pieces(x, g, a, b, ng * kk, "x", grouped=True):
        r = col.shape[0]
        out = y[rows].reshape(r, ng, cog).transpose(1, 0, 2)
        np.matmul(col.reshape(r, ng, kk).transpose(1, 0, 2), wg, out=out)


def _grouped_bwd_part(
    a: int,
    b: int,
    x: np.ndarray,
    gyr: np.ndarray,
    wg: np.ndarray,
    g: _Geom,
    gx: np.ndarray | None,
    need_w: bool,
) -> np.ndarray | None:
    """Gradients of a grouped convolution for images ``a:b``: fills ``gx[a:b]`` (NHWC) and
    returns this part's grad-weight as ``(G, Cog, kh*kw*Cg)``."""
    ng, kk, cog = wg.shape
    gw = None
    if need_w:
        gw = np.zeros((ng, cog, kk), dtype=x.dtype)
        tmp = np.empty_like(gw)
        for rows, col in _Pieces(x, g, a, b, ng * kk, "x", grouped=True):
            r = col.shape[0]
            gy3 = gyr[rows].reshape(r, ng, cog).transpose(1, 2, 0)  # (G, Cog, r)
            gw += np.matmul(gy3, col.reshape(r, ng, kk).transpose(1, 0, 2), out=tmp)
    if gx is None:
        return gw
    per = g.ho * g.wo
    hp, wp = g.padded
    cg = g.c // ng
    nb = int(min(b - a, max(1, _WORKERS.chunk_rows(per * ng * kk * x.itemsize))))
    gcol_buf = _scratch((nb * per, ng, kk), x.dtype, tag="gcol_grouped")[0]
    gxp_buf = _scratch((nb, hp, wp, g.c), x.dtype, tag="col2im")[0]
    wt = wg.transpose(0, 2, 1)  # (G, Cog, kh*kw*Cg)
    ey, ex = g.sy * (g.ho - 1) + 1, g.sx * (g.wo - 1) + 1
    for s in range(a, b, nb):
        e = min(b, s + nb)
        gc = gcol_buf[: (e - s) * per]
        gy3 = gyr[s * per : e * per].reshape(-1, ng, cog).transpose(1, 0, 2)  # (G, r, Cog)
        np.matmul(gy3, wt, out=gc.transpose(1, 0, 2))
        gc7 = gc.reshape(e - s, g.ho, g.wo, ng, g.kh, g.kw, cg)
        gxp = gxp_buf[: e - s]
        gxp.fill(0)
        gxp5 = gxp.reshape(e - s, hp, wp, ng, cg)  # a view: gxp is contiguous
        for i in range(g.kh):
            for j in range(g.kw):
                gxp5[:, i : i + ey : g.sy, j : j + ex : g.sx] += gc7[:, :, :, :, i, j, :]
        gx[s:e] = gxp[:, g.ph : g.ph + g.h, g.pw : g.pw + g.w, :]
    return gw


def _images(g: _Geom, n: int) -> _Geom:
    """The geometry of the same convolution on ``n`` images."""
    return _Geom(
        (n, g.c, g.h, g.w), (g.co, g.c // g.g, g.kh, g.kw), (g.sy, g.sx), (g.ph, g.pw), g.g
    )


def _depthwise_fwd_part(
    a: int, b: int, x: np.ndarray, W: np.ndarray, g: _Geom, y: np.ndarray
) -> None:
    """Depthwise convolution of images ``a:b`` into the ``(N*Ho*Wo, Co)`` rows ``y``."""
    per = g.ho * g.wo
    _depthwise_forward(x[a:b], W, _images(g, b - a), y[a * per : b * per])


def _depthwise_bwd_part(
    a: int,
    b: int,
    x: np.ndarray,
    W: np.ndarray,
    gyr: np.ndarray,
    g: _Geom,
    gx: np.ndarray | None,
    need_w: bool,
) -> np.ndarray | None:
    """Depthwise gradients of images ``a:b``: fills ``gx[a:b]`` (NHWC), returns the part's gW."""
    per = g.ho * g.wo
    gxa, gw = _depthwise_backward(
        x[a:b], W, gyr[a * per : b * per], _images(g, b - a), gx is not None, need_w
    )
    if gx is not None:
        gx[a:b] = gxa.transpose(0, 2, 3, 1)
    return gw


def _depthwise_forward(x: np.ndarray, W: np.ndarray, g: _Geom, out: np.ndarray) -> None:
    """Depthwise convolution (G == C) by kh*kw broadcast multiply-adds into ``out`` (M, Co)."""
    mult = g.co // g.g
    hp, wp = g.padded
    xp = _pad_nhwc(x, g.ph, g.pw, hp, wp)
    win = _windows(xp, g.kh, g.kw, g.sy, g.sx, g.ho, g.wo)
    # output channel k*mult + r reads input channel k with filter W[k*mult + r, 0]
    wk = W.reshape(g.c, mult, g.kh, g.kw)
    y = out.reshape(g.n, g.ho, g.wo, g.c, mult)
    tmp = np.empty_like(y)
    for i in range(g.kh):
        for j in range(g.kw):
            if i == 0 and j == 0:
                np.multiply(win[:, :, :, i, j, :, None], wk[:, :, i, j], out=y)
                continue
            np.multiply(win[:, :, :, i, j, :, None], wk[:, :, i, j], out=tmp)
            y += tmp


def _depthwise_backward(
    x: np.ndarray, W: np.ndarray, gyr: np.ndarray, g: _Geom, need_x: bool, need_w: bool
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Grad-input and grad-weight of :func:`_depthwise_forward`."""
    mult = g.co // g.g
    wk = W.reshape(g.c, mult, g.kh, g.kw)
    gy5 = gyr.reshape(g.n, g.ho, g.wo, g.c, mult)
    gx = gw = None
    if need_x:
        # each tap's contribution gy * w is added straight into the padded input gradient
        hp, wp = g.padded
        gxp = np.zeros((g.n, hp, wp, g.c), dtype=gyr.dtype)
        tmp = np.empty((g.n, g.ho, g.wo, g.c), dtype=gyr.dtype)
        ey, ex = g.sy * (g.ho - 1) + 1, g.sx * (g.wo - 1) + 1
        for i in range(g.kh):
            for j in range(g.kw):
                if mult == 1:
                    np.multiply(gy5[..., 0], wk[:, 0, i, j], out=tmp)
                else:
                    np.einsum("nhwcr,cr->nhwc", gy5, wk[:, :, i, j], out=tmp)
                gxp[:, i : i + ey : g.sy, j : j + ex : g.sx, :] += tmp
        gx = gxp[:, g.ph : g.ph + g.h, g.pw : g.pw + g.w, :].transpose(0, 3, 1, 2)
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
