"""Memory-layout helpers: NCHW-shaped arrays with NHWC memory seen as ``(N*H*W, C)`` rows.

A fast-path output is the C-contiguous ``(N, H, W, C)`` result of one GEMM returned as an
NCHW-shaped view; :func:`_rows` turns such an array back into its row matrix without a
copy. :class:`_Geom` holds the shapes of one convolution.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided


def _rows(a: np.ndarray) -> np.ndarray:
    """View (or, if the memory is not NHWC, copy) an NCHW-shaped array as ``(N*H*W, C)``."""
    t = a.transpose(0, 2, 3, 1)
    if not t.flags.c_contiguous:
        t = np.ascontiguousarray(t)
    return t.reshape(-1, a.shape[1])


def _nchw_view(rows: np.ndarray, n: int, h: int, w: int) -> np.ndarray:
    """Return the NCHW-shaped view of a C-contiguous ``(N*H*W, C)`` row matrix."""
    return rows.reshape(n, h, w, rows.shape[1]).transpose(0, 3, 1, 2)


def _pad_nhwc(x: np.ndarray, ph: int, pw: int, hp: int, wp: int) -> np.ndarray:
    """Copy NCHW-shaped ``x`` into a new zero-bordered NHWC buffer of spatial size hp x wp."""
    n, c, h, w = x.shape
    xp = np.zeros((n, hp, wp, c), dtype=x.dtype)
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
