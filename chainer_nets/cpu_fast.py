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

* work is split over worker threads (one per core, :func:`set_threads`) by slices of the
  batch: NumPy releases the GIL inside copies, ufunc loops and BLAS calls, so the im2col
  copies and element-wise passes use every core, not only the GEMMs. Inside a parallel
  region NumPy's BLAS is pinned to one thread per worker through ``threadpoolctl`` (two
  multi-threaded GEMMs started at once fight over the same cores); where BLAS cannot be
  pinned everything runs on one thread with larger chunks.
* stride-1 convolutions (most of them): each worker zero-pads its images into an NHWC
  buffer and copies, for pieces of whole images of about :data:`CHUNK_BYTES`, an im2col
  over the kernel *width* only: ``(n, Ho + kh - 1, Wo, kw*C)``. Kernel row ``i`` then
  reads a plain view of it (rows ``i .. i + Ho - 1``), so the convolution is ``kh`` GEMMs
  with ``K = kw*C``, summed straight into the worker's rows of the output. The copy is
  ``kw`` rather than ``kh*kw`` times the input. grad-weight uses the same pieces
  (``piece_i.T @ gy`` per kernel row); grad-input is the forward convolution of ``gy``
  by the flipped, transposed kernel, so it takes the same path. Buffers are per-thread
  and reused between calls; 1x1 convolutions skip im2col entirely.
* strided convolutions: the full ``(rows, kh*kw*C)`` im2col per cache-sized piece (several
  images, or blocks of output rows of one large image) times the reshaped weights;
  grad-weight ``col.T @ gy`` over the same pieces; grad-input ``gy @ W`` per piece,
  folded back by ``kh*kw`` strided slice-adds.
* groups: one batched ``matmul`` over groups; depthwise convolutions (one input
  channel per group) use ``kh*kw`` broadcast multiply-adds instead of GEMMs (one thread).
* batch normalization (training): per-channel statistics over the row matrix, computed
  per cache-sized block in float64 and merged across blocks and workers with Chan et
  al.'s parallel-variance formula, then one fused scale/shift pass; the backward pass
  likewise needs two passes. Test mode is one multiply-add pass.
* ReLU, its gradient and the residual addition are split over the workers too.
* glibc's malloc is asked to keep freed blocks mapped (:func:`_keep_freed_memory`), so
  the activation-sized arrays a step allocates and frees are not page-faulted in again.

Everything is dispatched automatically: :func:`install` replaces
``chainer.functions.convolution_2d`` (also as seen by ``L.Convolution2D``) with
a wrapper that picks :class:`FastConvolution2D` for supported NumPy inputs, and
wraps the generic batch-normalization implementation that Chainer's own
``BatchNormalization`` FunctionNode calls (so running statistics, links and
the Trainer are unchanged), and the NumPy forward methods of Chainer's ``ReLU``,
``ReLUGrad2`` and ``Add`` nodes. CuPy/ChainerX arrays, dilation, ``cover_all``,
non-float dtypes, double backprop and anything else unsupported take Chainer's
own code. ``CHAINER_NETS_CPU_FAST=0`` disables it at install time;
``chainer.config.cpu_fast`` (or the :func:`enabled` context manager) toggles it
at run time.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import chainer
import numpy as np
from chainer import function_node
from chainer.functions.activation import relu as _relu_mod
from chainer.functions.connection import convolution_2d as _conv_mod
from chainer.functions.math import basic_math as _math_mod
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
    "set_threads",
    "threads",
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


def _scratch(shape: tuple, dtype: Any, tag: Any = None) -> tuple[np.ndarray, bool]:
    """A reusable per-thread buffer for transient arrays (avoids page faults); (buf, fresh)."""
    cache = getattr(_SCRATCH, "bufs", None)
    if cache is None:
        cache = _SCRATCH.bufs = {}
        with _CACHES_LOCK:
            _CACHES.append(cache)
    key = (shape, np.dtype(dtype).str, tag)
    buf = cache.get(key)
    if buf is not None:
        return buf, False
    if len(cache) >= 32:
        cache.clear()
    buf = cache[key] = np.empty(shape, dtype=dtype)
    return buf, True


_CACHES: list[dict] = []
_CACHES_LOCK = threading.Lock()


def release_buffers() -> None:
    """Free every thread's cached scratch buffers (they are re-created on demand).

    Call it between training steps, not while a fast-path operation is running.
    """
    with _CACHES_LOCK:
        for cache in _CACHES:
            cache.clear()
    _POOL.clear()


class _ArrayPool:
    """Recycles large output arrays instead of allocating them afresh each step.

    glibc serves allocations above 32 MB (its largest mmap threshold) with fresh mmaps,
    whose pages the kernel faults in and zeroes on first touch: for a Wide ResNet at
    batch 128 that was ~3 s of system time per step. The pool keeps such blocks; a block
    is handed out again once no array refers to it any more (NumPy views keep their
    owner alive, so the owner's reference count tells). Blocks are kept while the pool
    holds less than :data:`POOL_MAX_BYTES`; :func:`release_buffers` empties it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blocks: dict[int, list[np.ndarray]] = {}
        self.bytes = 0

    def empty(self, shape: tuple, dtype: Any) -> np.ndarray:
        """An uninitialised C-contiguous array, from a free pooled block when it is large."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if nbytes < POOL_MIN_BYTES:
            return np.empty(shape, dtype=dtype)
        with self._lock:
            blocks = self._blocks.setdefault(nbytes, [])
            for blk in blocks:
                # referenced only by the list, this loop and getrefcount's argument: free
                if sys.getrefcount(blk) == 3:
                    return blk.view(dtype).reshape(shape)
            if self.bytes + nbytes > POOL_MAX_BYTES:
                return np.empty(shape, dtype=dtype)
            blk = np.empty(nbytes, dtype=np.uint8)
            blocks.append(blk)
            self.bytes += nbytes
            return blk.view(dtype).reshape(shape)

    def like(self, a: np.ndarray) -> np.ndarray:
        """``np.empty_like(a)`` (same memory order for NCHW or NHWC memory) from the pool."""
        if a.ndim == 4 and a.transpose(0, 2, 3, 1).flags.c_contiguous:
            n, c, h, w = a.shape
            return self.empty((n, h, w, c), a.dtype).transpose(0, 3, 1, 2)
        if a.flags.c_contiguous:
            return self.empty(a.shape, a.dtype)
        return np.empty_like(a)

    def clear(self) -> None:
        """Forget every block (arrays still in use keep theirs alive)."""
        with self._lock:
            self._blocks.clear()
            self.bytes = 0


def _memory_bytes() -> int:
    """Physical memory of this machine in bytes (8 GiB if it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


#: Arrays of at least this many bytes come from :class:`_ArrayPool` (glibc's mmap range).
POOL_MIN_BYTES = 32 << 20
#: The pool keeps at most this many bytes of blocks (a quarter of physical memory).
POOL_MAX_BYTES = _memory_bytes() // 4
_POOL = _ArrayPool()


#: Target size of one im2col chunk when every worker's BLAS runs on one thread: small enough
#: that the chunk is written and read back by the GEMM while it is still in the core's cache.
CHUNK_BYTES = int(float(os.environ.get("CHAINER_NETS_CPU_FAST_CHUNK_KB", "2048")) * 1024)

#: Chunk size when the BLAS thread count cannot be controlled (one worker; the GEMM itself
#: is multi-threaded and needs larger blocks to amortise its thread start-up).
UNPINNED_CHUNK_BYTES = 32 << 20


# ----------------------------------------------------------------------------
# worker threads
# ----------------------------------------------------------------------------


def _default_threads() -> int:
    """Worker count: ``CHAINER_NETS_CPU_THREADS`` or the cores this process may run on."""
    env = os.environ.get("CHAINER_NETS_CPU_THREADS", "").strip()
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _blas_controllers() -> list | None:
    """threadpoolctl's controllers of the BLAS libraries NumPy uses, or None if unavailable."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    libs = ThreadpoolController().select(user_api="blas").lib_controllers
    return list(libs) or None


class _Workers:
    """Runs a function over contiguous image ranges on several threads.

    NumPy releases the GIL inside copies, ufunc loops and BLAS calls, so T Python threads
    working on T slices of the batch use T cores for the im2col copies and the element-wise
    passes too, not only inside the GEMMs. Each thread's GEMMs are pinned to one BLAS thread
    for the duration (two multi-threaded GEMMs started at once fight over the same cores);
    without a way to pin BLAS (threadpoolctl missing, or a BLAS it cannot steer) everything
    runs on the calling thread with NumPy's BLAS as configured.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = False
        self._pool: Any = None
        self._blas: list | None = None
        self.threads = 1

    def _setup(self, threads: int | None = None) -> None:
        with self._lock:
            if self._ready and threads is None:
                return
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            self._blas = _blas_controllers()
            want = _default_threads() if threads is None else max(1, int(threads))
            self.threads = want if self._blas is not None else 1
            if self.threads > 1:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.threads - 1, "chainer_nets_cpu")
            self._ready = True

    @property
    def pinned(self) -> bool:
        """Whether BLAS is pinned to one thread inside :meth:`run`."""
        if not self._ready:
            self._setup()
        return self._blas is not None

    def chunk_rows(self, bytes_per_row: int) -> int:
        """Rows of a buffer (``bytes_per_row`` each) that make one cache-sized chunk."""
        target = CHUNK_BYTES if self.pinned else UNPINNED_CHUNK_BYTES
        return int(max(1, target // max(1, bytes_per_row)))

    def split(self, n: int, per_thread: int = 1) -> list[tuple[int, int]]:
        """Contiguous ``(start, stop)`` ranges of ``range(n)``: ``per_thread`` per worker."""
        if not self._ready:
            self._setup()
        t = max(1, min(self.threads * per_thread, n))
        bounds = [n * i // t for i in range(t + 1)]
        return [(bounds[i], bounds[i + 1]) for i in range(t)]

    def run_sized(self, fn: Any, n: int, size: int, *args: Any) -> list:
        """:meth:`run` for memory-bound passes: on the calling thread alone (one task) when
        the array has fewer than :data:`PARALLEL_MIN_SIZE` elements, where handing work to
        another thread (~0.1 ms) costs more than it saves."""
        if size < PARALLEL_MIN_SIZE:
            return [fn(0, n, *args)]
        return self.run(fn, n, *args)

    def run(self, fn: Any, n: int, *args: Any) -> list:
        """``[fn(start, stop, *args) for each task range]``, in task order.

        ``range(n)`` is cut into :data:`TASKS_PER_THREAD` tasks per worker (1 by default: more,
        smaller tasks balanced unequal speeds but measured slower) that the threads, the
        calling one included, take in turn as they become free; a failing task stops the
        others from starting new ones. The tasks and the order of the returned results
        depend only on ``n`` and the thread count, so results reduced from them are
        reproducible.
        """
        tasks = self.split(n, TASKS_PER_THREAD)
        old = None
        if self._blas is not None:
            old = [lib.num_threads for lib in self._blas]
            for lib in self._blas:
                lib.set_num_threads(1)
        try:
            if self.threads == 1 or len(tasks) == 1:
                return [fn(a, b, *args) for a, b in tasks]
            results: list = [None] * len(tasks)
            order = iter(range(len(tasks)))
            lock = threading.Lock()

            failed: list = []

            def drain() -> None:
                while not failed:
                    with lock:
                        i = next(order, None)
                    if i is None:
                        return
                    try:
                        results[i] = fn(*tasks[i], *args)
                    except BaseException:
                        failed.append(i)  # the other threads stop taking tasks
                        raise

            helpers = min(self.threads, len(tasks)) - 1
            futures = [self._pool.submit(drain) for _ in range(helpers)]
            try:
                drain()
            finally:
                for f in futures:  # never return while a worker still writes shared buffers
                    f.exception()
            for f in futures:
                f.result()
            return results
        finally:
            if old is not None:
                for lib, k in zip(self._blas, old, strict=True):
                    lib.set_num_threads(k)


#: Memory-bound passes (batch normalization, ReLU, addition) over arrays with fewer
#: elements than this stay on one thread: measured on 2 cores, a 2 MB batch normalization
#: ran faster on one thread, a 4 MB one equally fast, an 8 MB one 1.8x faster on two.
PARALLEL_MIN_SIZE = 1 << 20

#: Tasks each worker thread gets on average in :meth:`_Workers.run` (dynamic balancing).
TASKS_PER_THREAD = int(os.environ.get("CHAINER_NETS_CPU_FAST_TASKS", "1"))

_WORKERS = _Workers()


def threads() -> int:
    """Number of threads the fast path uses (1 when BLAS threads cannot be pinned)."""
    _WORKERS.split(1)
    return _WORKERS.threads


def set_threads(n: int | None = None) -> int:
    """Use ``n`` worker threads (None: ``CHAINER_NETS_CPU_THREADS`` or every core); returns
    the count in effect, which is 1 when NumPy's BLAS threads cannot be pinned."""
    _WORKERS._setup(n)
    return _WORKERS.threads


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
    each image is padded once however many row blocks it is cut into.
    """

    def __init__(self, x: np.ndarray, g: _Geom, a: int, b: int, k: int, tag: str) -> None:
        self.x, self.g, self.a, self.b, self.tag = x, g, a, b, tag
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
                piece = col[: w.shape[0] * w.shape[1] * g.wo].reshape(w.shape)
                np.copyto(piece, w)
                # rows of the (N*Ho*Wo) output: contiguous because a piece is whole images
                # or a row block of a single image
                yield slice(s * per + r0 * g.wo, (e - 1) * per + r1 * g.wo), piece.reshape(-1, k)


#: The kernel-width im2col multiplies one image at a time (``Ho*Wo`` rows per GEMM); below
#: this many output pixels per image (FractalNet's 4x4 and 2x2 stages) the full im2col,
#: which stacks the images into one tall GEMM, is used instead.
ROWS_MIN_PIXELS = 64


def _use_rows(g: _Geom) -> bool:
    """Whether a convolution takes the kernel-width im2col path (:class:`_RowPieces`)."""
    return g.sy == 1 and g.ho * g.wo >= ROWS_MIN_PIXELS and g.kw * g.c >= ROWS_MIN_K


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


def _pointwise_rows(x: np.ndarray, g: _Geom, a: int, b: int) -> np.ndarray:
    """Rows ``(n*Ho*Wo, C)`` of images ``a:b`` for a 1x1 convolution (a view if possible)."""
    xs = x[a:b]
    if g.sy != 1 or g.sx != 1:
        xs = xs[:, :, :: g.sy, :: g.sx]
    return _rows(xs)


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


def _im2col(x: np.ndarray, g: _Geom) -> np.ndarray:
    """Return the contiguous ``(N*Ho*Wo, kh*kw*C)`` im2col matrix (a view for 1x1 convs)."""
    if g.pointwise:
        if g.sy != 1 or g.sx != 1:
            x = x[:, :, :: g.sy, :: g.sx]
        return _rows(x)
    hp, wp = g.padded
    xp = _pad_nhwc(x, g.ph, g.pw, hp, wp)
    col = np.empty((g.n, g.ho, g.wo, g.kh, g.kw, g.c), dtype=x.dtype)
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


# ----------------------------------------------------------------------------
# element-wise functions between the convolutions (ReLU, its gradient, residual add)
# ----------------------------------------------------------------------------


def _elementwise_ok(*arrays: Any) -> bool:
    """Whether equal-shape, equal-dtype NumPy float arrays are worth splitting over threads."""
    a0 = arrays[0]
    return (
        is_enabled()
        and all(type(a) is np.ndarray for a in arrays)
        and a0.dtype in _FLOATS
        and a0.ndim >= 2
        and a0.size >= PARALLEL_MIN_SIZE
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


# ----------------------------------------------------------------------------
# install / uninstall
# ----------------------------------------------------------------------------


def _keep_freed_memory() -> bool:
    """Ask glibc's malloc to reuse freed blocks up to 32 MB instead of returning them.

    A training step allocates and frees the same activation-sized arrays again and again;
    by default glibc hands blocks of a few MB back to the kernel (or serves them by mmap),
    and every reuse then page-faults on fresh zeroed pages (~10k faults per ResNet-20 step).
    Raising the mmap and trim thresholds keeps those pages mapped. Returns whether it was
    applied (glibc only; elsewhere nothing changes).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    ok = mallopt(m_mmap_threshold, 32 << 20) == 1
    ok = ok and mallopt(m_trim_threshold, 1 << 30) == 1
    return ok and mallopt(m_top_pad, 64 << 20) == 1


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
    if default and sys.platform.startswith("linux"):
        _keep_freed_memory()
    impl = _bn_mod.GeneralBatchNormalizationImpl
    _ORIG["convolution_2d"] = _conv_mod.convolution_2d
    _ORIG["F.convolution_2d"] = chainer.functions.convolution_2d
    _ORIG["bn_forward"] = impl.forward
    _ORIG["bn_backward"] = impl.backward
    _ORIG["apply_bn_fwd"] = _bn_mod._apply_bn_fwd
    _ORIG["relu_fwd"] = _relu_mod.ReLU.forward_cpu
    _ORIG["relu_grad_fwd"] = _relu_mod.ReLUGrad2.forward_cpu
    _ORIG["add_fwd"] = _math_mod.Add.forward
    _conv_mod.convolution_2d = convolution_2d
    chainer.functions.convolution_2d = convolution_2d
    impl.forward = _bn_forward
    impl.backward = _bn_backward
    _bn_mod._apply_bn_fwd = _apply_bn_fwd
    _relu_mod.ReLU.forward_cpu = _relu_forward_cpu
    _relu_mod.ReLUGrad2.forward_cpu = _relu_grad_forward_cpu
    _math_mod.Add.forward = _add_forward


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
    _relu_mod.ReLU.forward_cpu = _ORIG["relu_fwd"]
    _relu_mod.ReLUGrad2.forward_cpu = _ORIG["relu_grad_fwd"]
    _math_mod.Add.forward = _ORIG["add_fwd"]
    _ORIG.clear()
