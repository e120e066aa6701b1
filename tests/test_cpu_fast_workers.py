"""Tests for :mod:`chainer_nets.cpu_fast.workers` and :mod:`~chainer_nets.cpu_fast.pool`: worker
threads, BLAS pinning, scratch memory and the array pool."""

from __future__ import annotations  # noqa: I001  (chainer_nets must be imported before chainer)

import sys

import chainer_nets  # noqa: F401  (installs the NumPy-2 compat layer first)
import numpy as np
import pytest

from chainer_nets import cpu_fast
from chainer_nets.cpu_fast import pool as pool_mod
from chainer_nets.cpu_fast import workers
from cpu_fast_support import CONV_CASES, conv_both
import cpu_fast_support

two_threads = cpu_fast_support.two_threads


def test_workers_wait_for_every_task_and_raise(monkeypatch):
    monkeypatch.setattr(workers, "TASKS_PER_THREAD", 4)  # 8 tasks of one image each
    cpu_fast.set_threads(2)
    running, finished = [], []

    def fn(a, b):
        running.append(a)
        import time

        time.sleep(0.02)
        if a == 1:
            raise ValueError("task 1 failed")
        finished.append(a)

    try:
        if cpu_fast.threads() < 2:
            pytest.skip("one worker only")
        with pytest.raises(ValueError, match="task 1"):
            workers._WORKERS.run(fn, 8)
        # nothing still runs once run() has returned or raised, and the failure stopped
        # the threads from taking the remaining tasks
        assert sorted(finished + [1]) == sorted(running)
        assert len(running) < 8
    finally:
        cpu_fast.set_threads(None)


def test_workers_results_in_task_order(two_threads, monkeypatch):
    monkeypatch.setattr(workers, "TASKS_PER_THREAD", 3)
    res = workers._WORKERS.run(lambda a, b: (a, b), 10)
    assert res == sorted(res) and res[0][0] == 0 and res[-1][1] == 10
    assert all(p[1] == q[0] for p, q in zip(res, res[1:], strict=False))


def test_blas_threads_restored_after_a_parallel_region(two_threads):
    libs = workers._blas_controllers()
    before = [lib.num_threads for lib in libs]
    seen = []
    workers._WORKERS.run(lambda a, b: seen.append([lib.num_threads for lib in libs]), 2)
    assert all(v == [1] * len(libs) for v in seen)
    assert [lib.num_threads for lib in libs] == before


def test_without_threadpoolctl_runs_on_one_thread(monkeypatch):
    monkeypatch.setattr(workers, "_blas_controllers", lambda: None)
    try:
        assert cpu_fast.set_threads(4) == 1
        out = conv_both(CONV_CASES[0])
        np.testing.assert_allclose(out[True][0].array, out[False][0].array, rtol=1e-4, atol=1e-4)
    finally:
        monkeypatch.undo()
        cpu_fast.set_threads(None)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_keep_freed_memory_avoids_page_faults():
    import resource

    assert pool_mod._keep_freed_memory()
    a = np.ones(4 << 20, dtype=np.float32)  # 16 MB
    del a
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        b = np.empty(4 << 20, dtype=np.float32)
        b.fill(1.0)
        del b
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 1000  # ~4096 per fresh 16 MB array without it


def test_array_pool_reuses_only_unreferenced_blocks(monkeypatch):
    monkeypatch.setattr(pool_mod, "POOL_MIN_BYTES", 1024)
    pool = pool_mod._ArrayPool()
    a = pool.empty((16, 32), np.float32)  # 2 KB: pooled
    addr = a.__array_interface__["data"][0]
    view = a[3:, ::2]
    del a
    b = pool.empty((16, 32), np.float32)  # the view still holds the first block
    assert b.__array_interface__["data"][0] != addr
    del view
    c = pool.empty((32, 16), np.float32)  # same size, any shape: the first block again
    assert c.__array_interface__["data"][0] == addr and c.shape == (32, 16)
    small = pool.empty((4, 4), np.float32)  # under POOL_MIN_BYTES: a plain array
    assert small.base is None
    nhwc = np.empty((2, 8, 8, 4), np.float32).transpose(0, 3, 1, 2)
    like = pool.like(nhwc)
    assert like.shape == nhwc.shape and like.transpose(0, 2, 3, 1).flags.c_contiguous
    pool.clear()
    assert pool.bytes == 0


def test_array_pool_respects_its_cap(monkeypatch):
    monkeypatch.setattr(pool_mod, "POOL_MIN_BYTES", 1024)
    monkeypatch.setattr(pool_mod, "POOL_MAX_BYTES", 5000)
    pool = pool_mod._ArrayPool()
    kept = [pool.empty((512,), np.float32), pool.empty((512,), np.float32)]
    assert pool.bytes == 4096
    extra = pool.empty((512,), np.float32)  # would exceed the cap: not pooled
    assert extra.base is None and pool.bytes == 4096
    assert all(k.base is not None for k in kept)
