"""Worker threads: a function run over contiguous image ranges with BLAS pinned to one thread.

Environment variables read at import: ``CHAINER_NETS_CPU_THREADS`` (worker count),
``CHAINER_NETS_CPU_FAST_CHUNK_KB`` (:data:`CHUNK_BYTES`), ``CHAINER_NETS_CPU_FAST_TASKS``
(:data:`TASKS_PER_THREAD`).
"""

from __future__ import annotations

import os
import threading
from typing import Any

#: Target size of one im2col chunk when every worker's BLAS runs on one thread: small enough
#: that the chunk is written and read back by the GEMM while it is still in the core's cache.
CHUNK_BYTES = int(float(os.environ.get("CHAINER_NETS_CPU_FAST_CHUNK_KB", "2048")) * 1024)

#: Chunk size when BLAS keeps its own threads: when the thread count cannot be controlled (one
#: worker), and for calls too short to split over the workers, which run on the calling
#: thread outside :meth:`_Workers.run`. The GEMM is then multi-threaded and needs larger
#: blocks to amortise its thread start-up; with 2 MB chunks a 512-channel 3x3 convolution on
#: 4x4 maps (batch 16) streamed its 9 MB weight matrix once per two images.
UNPINNED_CHUNK_BYTES = 32 << 20


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
        self._pinned_now = False  # inside run(), with BLAS on one thread per worker
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
        """Rows of a buffer (``bytes_per_row`` each) that make one chunk: cache-sized for the
        single-threaded GEMMs inside :meth:`run`, larger where BLAS runs its own threads."""
        target = CHUNK_BYTES if self.pinned and self._pinned_now else UNPINNED_CHUNK_BYTES
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
            self._pinned_now = True
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
                self._pinned_now = False
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
