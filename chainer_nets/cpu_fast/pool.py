"""Memory the fast path reuses between calls: per-thread scratch buffers and a pool of large
output arrays, plus glibc's malloc kept from returning freed blocks to the kernel.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import numpy as np

_SCRATCH = threading.local()


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
