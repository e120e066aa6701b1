"""im2col pieces: the padded NHWC images and their window matrices, built per cache-sized piece.

Two layouts: the full ``(rows, kh*kw*C)`` im2col (:class:`_Pieces`) and,
for stride-1 convolutions on larger maps, the im2col over the kernel width only
(:class:`_RowPieces`); :func:`_use_rows` chooses between them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.lib.stride_tricks import as_strided

from chainer_nets.cpu_fast.layout import _Geom, _rows, _windows
from chainer_nets.cpu_fast.pool import _scratch
from chainer_nets.cpu_fast.workers import _WORKERS


def _padded_images(
    x: np.ndarray, g: _Geom, a: int, b: int, nb: int, tag: str
) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(s, e, padded)``: images ``s:e`` of ``a:b`` (``nb`` at a time) of NCHW-shaped ``x``,
    copied into this thread's zero-bordered NHWC buffer ``(e - s, Hp, Wp, C)``."""
    hp, wp = g.padded
    pad, fresh = _scratch((nb, hp, wp, g.c), x.dtype, tag=("pad", tag, g.ph, g.pw, g.h, g.w))
    if fresh:
        pad.fill(0)  # only the interior is ever written: the border stays zero
    for s in range(a, b, nb):
        e = min(b, s + nb)
        xp = pad[: e - s]
        xp[:, g.ph : g.ph + g.h, g.pw : g.pw + g.w, :] = x[s:e].transpose(0, 2, 3, 1)
        yield s, e, xp


class _Pieces:
    """Cache-sized pieces of the im2col matrix of images ``a:b``, built in this thread's buffers.

    Several whole images form one piece when they fit :data:`CHUNK_BYTES`; a larger image is
    cut into blocks of output rows. Iterating yields ``(rows of the output, im2col piece)``;
    each image is padded once however many row blocks it is cut into. With ``grouped`` the
    columns are ordered group-major, ``(G, kh, kw, C/G)``, so that group ``j``'s operand is
    the plain column block ``j`` (a strided matrix BLAS reads directly).
    """

    def __init__(
        self, x: np.ndarray, g: _Geom, a: int, b: int, k: int, tag: str, grouped: bool = False
    ) -> None:
        self.x, self.g, self.a, self.b, self.tag, self.grouped = x, g, a, b, tag, grouped
        rows = _WORKERS.chunk_rows(g.wo * k * x.itemsize)
        if rows >= g.ho:
            self.nb, self.rb = int(min(b - a, rows // g.ho)), g.ho
        else:
            self.nb, self.rb = 1, rows

    def __iter__(self) -> Iterator[tuple[slice, np.ndarray]]:
        g, nb, rb = self.g, self.nb, self.rb
        k = g.kh * g.kw * g.c
        col = _scratch((nb * rb * g.wo, k), self.x.dtype, tag=("col", self.tag))[0]
        per = g.ho * g.wo
        for s, e, xp in _padded_images(self.x, g, self.a, self.b, nb, self.tag):
            win = _windows(xp, g.kh, g.kw, g.sy, g.sx, g.ho, g.wo)
            for r0 in range(0, g.ho, rb):
                r1 = min(g.ho, r0 + rb)
                w = win[:, r0:r1]
                if self.grouped:  # (n, rows, Wo, kh, kw, C) -> (n, rows, Wo, G, kh, kw, C/G)
                    w = w.reshape(*w.shape[:5], g.g, g.c // g.g).transpose(0, 1, 2, 5, 3, 4, 6)
                piece = col[: w.shape[0] * w.shape[1] * g.wo].reshape(w.shape)
                np.copyto(piece, w)
                # rows of the (N*Ho*Wo) output: contiguous because a piece is whole images
                # or a row block of a single image
                yield slice(s * per + r0 * g.wo, (e - 1) * per + r1 * g.wo), piece.reshape(-1, k)


#: The kernel-width im2col multiplies one image at a time (``Ho*Wo`` rows per GEMM); below
#: this many output pixels per image (FractalNet's 4x4 and 2x2 stages) the full im2col,
#: which stacks the images into one tall GEMM, is used instead.
ROWS_MIN_PIXELS = 64

#: The same bound for a convolution too short to split over the workers (it runs on the
#: calling thread, with BLAS's own threads): one tall multi-threaded GEMM beats per-image
#: GEMMs there unless the maps are large. Measured at batch 16 with 2 threads: 640 channels
#: on 8x8 maps took 0.63 s forward and backward per image-GEMM, 0.21 s with the full im2col.
ROWS_MIN_PIXELS_UNSPLIT = 256


def _use_rows(g: _Geom, split: bool = True) -> bool:
    """Whether a convolution takes the kernel-width im2col path (:class:`_RowPieces`);
    ``split``: whether its images are shared out over the worker threads."""
    min_pixels = ROWS_MIN_PIXELS if split else ROWS_MIN_PIXELS_UNSPLIT
    return g.sy == 1 and g.ho * g.wo >= min_pixels and g.kw * g.c >= ROWS_MIN_K


#: ... nor when a kernel row spans fewer than this many inputs (``kw*C``; 9 for an RGB
#: image), where the kh thin GEMMs lose to one GEMM over the full ``kh*kw*C``.
ROWS_MIN_K = 32


class _RowPieces:
    """Stride-1 convolutions: im2col over the kernel *width* only, for pieces of whole images.

    A piece holds, for every input row a tap row can reach (``Ho + kh - 1`` of them) and
    every output column, the ``kw`` neighbouring pixels side by side: ``(n, Ho + kh - 1,
    Wo, kw*C)``. Kernel row ``i`` then reads the rows ``i .. i + Ho - 1`` of it, a plain
    view of shape ``(n, Ho*Wo, kw*C)``, so the convolution is ``kh`` GEMMs with
    ``K = kw*C`` summed. The copy is ``kw`` instead of ``kh*kw`` times the input, which
    measured 1.2-1.8x faster per convolution than the full im2col for CIFAR ResNets.
    Iterating yields ``(first image, last image + 1, piece)``.
    """

    def __init__(self, x: np.ndarray, g: _Geom, a: int, b: int, tag: str) -> None:
        self.x, self.g, self.a, self.b, self.tag = x, g, a, b, tag
        self.hr = g.ho + g.kh - 1
        per_image = self.hr * g.wo * g.kw * g.c * x.itemsize
        self.nb = int(min(b - a, max(1, _WORKERS.chunk_rows(per_image))))

    def __iter__(self) -> Iterator[tuple[int, int, np.ndarray]]:
        g, nb, hr = self.g, self.nb, self.hr
        buf = _scratch((nb, hr, g.wo, g.kw * g.c), self.x.dtype, tag=("rows", self.tag))[0]
        for s, e, xp in _padded_images(self.x, g, self.a, self.b, nb, self.tag):
            s0, s1, s2, s3 = xp.strides
            win = as_strided(
                xp,
                (e - s, hr, g.wo, g.kw, g.c),
                (s0, s1, s2 * g.sx, s2, s3),
                writeable=False,
            )
            piece = buf[: e - s]
            np.copyto(piece.reshape(win.shape), win)
            yield s, e, piece


def _tap_rows(piece: np.ndarray, i: int, g: _Geom) -> np.ndarray:
    """Kernel row ``i``'s operand of a :class:`_RowPieces` piece: ``(n, Ho*Wo, kw*C)`` view."""
    return piece[:, i : i + g.ho].reshape(piece.shape[0], g.ho * g.wo, piece.shape[3])


def _pointwise_rows(x: np.ndarray, g: _Geom, a: int, b: int) -> np.ndarray:
    """Rows ``(n*Ho*Wo, C)`` of images ``a:b`` for a 1x1 convolution (a view if possible)."""
    xs = x[a:b]
    if g.sy != 1 or g.sx != 1:
        xs = xs[:, :, :: g.sy, :: g.sx]
    return _rows(xs)
