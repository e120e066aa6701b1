"""Tests for :mod:`chainer_nets.cpu_fast`: the fast NumPy conv/BN path against Chainer's own."""

from __future__ import annotations  # noqa: I001  (chainer_nets must be imported before chainer)

import os
import subprocess
import sys

import chainer_nets  # noqa: F401  (installs the NumPy-2 compat layer first)
import numpy as np
import pytest

import chainer
import chainer.functions as F
import chainer.links as L
from chainer import gradient_check
from chainer_nets import cpu_fast

cpu_fast.install()

CONV_CASES = [
    # (n, c, h, w, co, k, stride, pad, groups, bias)
    (2, 3, 7, 9, 4, 3, 1, 1, 1, True),
    (3, 4, 8, 8, 6, 3, 2, 1, 1, False),
    (2, 5, 9, 7, 3, 1, 1, 0, 1, True),
    (2, 4, 9, 9, 8, 1, 2, 0, 1, False),
    (2, 4, 7, 8, 6, 3, 1, 0, 2, True),
    (2, 4, 9, 6, 4, 3, 2, 1, 2, False),
    (2, 6, 7, 7, 6, 3, 1, 1, 6, False),
    (2, 4, 9, 8, 8, 3, 2, 1, 4, True),
    (1, 3, 5, 5, 2, 1, 1, 1, 1, True),
    (2, 3, 6, 10, 5, (3, 1), (1, 2), (1, 0), 1, True),
]


def _conv_both(case, dtype=np.float32, seed=0):
    n, c, h, w, co, k, s, p, g, bias = case
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.RandomState(seed)
    x = rng.randn(n, c, h, w).astype(dtype)
    W = rng.randn(co, c // g, kh, kw).astype(dtype)
    b = rng.randn(co).astype(dtype) if bias else None
    out = {}
    for flag in (True, False):
        with cpu_fast.enabled(flag):
            xv, Wv = chainer.Variable(x.copy()), chainer.Variable(W.copy())
            bv = chainer.Variable(b.copy()) if bias else None
            y = F.convolution_2d(xv, Wv, bv, stride=s, pad=p, groups=g)
            gy = np.random.RandomState(seed + 1).randn(*y.shape).astype(dtype)
            y.grad = gy
            y.backward()
            out[flag] = (y, xv.grad, Wv.grad, bv.grad if bias else None)
    return out


@pytest.fixture(params=["kernel-width im2col", "full im2col"])
def conv_path(request, monkeypatch):
    """Run a test on each of the two stride-1 convolution paths, whatever the sizes."""
    if request.param == "kernel-width im2col":
        monkeypatch.setattr(cpu_fast, "ROWS_MIN_PIXELS", 1)
        monkeypatch.setattr(cpu_fast, "ROWS_MIN_K", 1)
    else:
        monkeypatch.setattr(cpu_fast, "ROWS_MIN_PIXELS", 1 << 30)
    monkeypatch.setattr(cpu_fast, "DENSE_MIN_ROWS", 1)  # split even tiny batches over threads
    return request.param


def test_conv_paths_are_chosen_by_size():
    g = cpu_fast._Geom((8, 16, 32, 32), (16, 16, 3, 3), (1, 1), (1, 1), 1)
    assert cpu_fast._use_rows(g)  # a CIFAR ResNet stage-1 layer
    small = cpu_fast._Geom((8, 512, 2, 2), (512, 512, 3, 3), (1, 1), (1, 1), 1)
    rgb = cpu_fast._Geom((8, 3, 32, 32), (16, 3, 3, 3), (1, 1), (1, 1), 1)
    strided = cpu_fast._Geom((8, 16, 32, 32), (32, 16, 3, 3), (2, 2), (1, 1), 1)
    assert not any(cpu_fast._use_rows(v) for v in (small, rgb, strided))


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_chainer(case, conv_path):
    out = _conv_both(case)
    assert out[True][0].creator.__class__ is cpu_fast.FastConvolution2D
    assert out[False][0].creator.__class__ is not cpu_fast.FastConvolution2D
    for a, b in zip(out[True], out[False], strict=True):
        if b is None:
            continue
        a = a.array if isinstance(a, chainer.Variable) else a
        b = b.array if isinstance(b, chainer.Variable) else b
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunk", [1, 3000])
def test_conv_chunked_im2col_matches(monkeypatch, chunk, conv_path):
    monkeypatch.setattr(cpu_fast, "CHUNK_BYTES", chunk)
    cpu_fast.release_buffers()
    for case in (CONV_CASES[0], CONV_CASES[1], CONV_CASES[9]):
        out = _conv_both(case)
        for a, b in zip(out[True], out[False], strict=True):
            if b is not None:
                a = a.array if isinstance(a, chainer.Variable) else a
                b = b.array if isinstance(b, chainer.Variable) else b
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    cpu_fast.release_buffers()


@pytest.mark.parametrize("case", [CONV_CASES[i] for i in (0, 1, 3, 5, 6, 9)])
def test_conv_check_backward(case, conv_path):
    n, c, h, w, co, k, s, p, g, bias = case
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.RandomState(3)
    x = rng.randn(n, c, h, w)
    W = rng.randn(co, c // g, kh, kw)
    args = [x, W] + ([rng.randn(co)] if bias else [])
    ho = (h + 2 * (p if isinstance(p, int) else p[0]) - kh) // (s if isinstance(s, int) else s[0])
    wo = (w + 2 * (p if isinstance(p, int) else p[1]) - kw) // (s if isinstance(s, int) else s[1])
    gy = rng.randn(n, co, ho + 1, wo + 1)

    def f(*a):
        return cpu_fast.FastConvolution2D(cpu_fast._pair(s), cpu_fast._pair(p), g).apply(a)[0]

    with cpu_fast.enabled(True):
        gradient_check.check_backward(f, tuple(args), gy, dtype=np.float64, atol=1e-6, rtol=1e-5)


def test_conv_double_backprop_uses_chainer_graph():
    rng = np.random.RandomState(0)
    x = chainer.Variable(rng.randn(2, 3, 6, 6))
    W = chainer.Variable(rng.randn(4, 3, 3, 3))
    grads = {}
    for flag in (True, False):
        with cpu_fast.enabled(flag):
            y = F.convolution_2d(x, W, pad=1)
            (gx,) = chainer.grad([F.sum(y * y)], [x], enable_double_backprop=True)
            (ggw,) = chainer.grad([F.sum(gx * gx)], [W])
            grads[flag] = ggw.array
    np.testing.assert_allclose(grads[True], grads[False], rtol=1e-10)


def test_unsupported_falls_back():
    x = chainer.Variable(np.random.randn(2, 3, 7, 7).astype(np.float32))
    W = chainer.Variable(np.random.randn(4, 3, 3, 3).astype(np.float32))
    with cpu_fast.enabled(True):
        assert isinstance(F.convolution_2d(x, W).creator, cpu_fast.FastConvolution2D)
        y = F.convolution_2d(x, W, dilate=2)
        assert not isinstance(y.creator, cpu_fast.FastConvolution2D)
        y = F.convolution_2d(x, W, cover_all=True, stride=2)
        assert not isinstance(y.creator, cpu_fast.FastConvolution2D)
        y = F.convolution_2d(x, W.array.astype(np.float64))
        assert not isinstance(y.creator, cpu_fast.FastConvolution2D)


def test_switch_turns_it_off():
    x = np.random.randn(2, 3, 5, 5).astype(np.float32)
    W = np.random.randn(4, 3, 3, 3).astype(np.float32)
    with cpu_fast.enabled(False):
        assert not cpu_fast.is_enabled()
        y = F.convolution_2d(x, W)
        assert not isinstance(y.creator, cpu_fast.FastConvolution2D)
    with chainer.using_config("cpu_fast", False):
        assert not isinstance(F.convolution_2d(x, W).creator, cpu_fast.FastConvolution2D)
    assert cpu_fast.is_enabled()
    y = L.Convolution2D(3, 4, 3)(x)
    assert isinstance(y.creator, cpu_fast.FastConvolution2D)


def test_environment_variable_disables_at_install():
    code = (
        "import chainer_nets, chainer, numpy as np\n"
        "from chainer_nets import cpu_fast\n"
        "cpu_fast.install()\n"
        "import chainer.functions as F\n"
        "y = F.convolution_2d(np.ones((1, 2, 4, 4), 'f'), np.ones((3, 2, 3, 3), 'f'))\n"
        "print(type(y.creator).__name__, cpu_fast.is_enabled())\n"
    )
    env = dict(os.environ, CHAINER_NETS_CPU_FAST="0")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["Convolution2DFunction", "False"]


def test_cupy_free_numpy_path():
    import chainer_nets.cpu_fast as mod

    with open(mod.__file__) as f:
        src = f.read()
    assert "import cupy" not in src and "import torch" not in src
    x = np.random.randn(2, 3, 5, 5).astype(np.float32)
    W = np.random.randn(4, 3, 3, 3).astype(np.float32)
    y = F.convolution_2d(x, W, pad=1)
    assert type(y.array) is np.ndarray


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nhwc", [True, False])
def test_batch_normalization_matches_chainer(dtype, nhwc):
    rng = np.random.RandomState(1)
    x = (rng.randn(4, 5, 6, 7) * 3 + 2).astype(dtype)
    if nhwc:  # the memory layout the fast convolution produces
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    gamma = rng.rand(5).astype(dtype) + 0.5
    beta = rng.randn(5).astype(dtype)
    gy = rng.randn(*x.shape).astype(dtype)
    out = {}
    for flag in (True, False):
        with cpu_fast.enabled(flag):
            rm, rv = np.zeros(5, dtype), np.ones(5, dtype)
            xv, gv, bv = (chainer.Variable(a.copy()) for a in (x, gamma, beta))
            y = F.batch_normalization(xv, gv, bv, running_mean=rm, running_var=rv)
            y.grad = gy
            y.backward()
            ytest = F.fixed_batch_normalization(x, gamma, beta, rm, rv)
            out[flag] = (y.array, xv.grad, gv.grad, bv.grad, rm, rv, ytest.array)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for a, b in zip(out[True], out[False], strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_batch_normalization_check_backward():
    rng = np.random.RandomState(2)
    x = rng.randn(3, 4, 5, 6)
    gamma = rng.rand(4) + 0.5
    beta = rng.randn(4)
    gy = rng.randn(*x.shape)
    with cpu_fast.enabled(True):
        gradient_check.check_backward(
            lambda *a: F.batch_normalization(*a), (x, gamma, beta), gy, atol=1e-6, rtol=1e-5
        )


class _TinyNet(chainer.Chain):
    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.c1 = L.Convolution2D(3, 8, 3, pad=1, nobias=True)
            self.b1 = L.BatchNormalization(8)
            self.c2 = L.Convolution2D(8, 8, 3, stride=2, pad=1, nobias=True, groups=2)
            self.b2 = L.BatchNormalization(8)
            self.c3 = L.Convolution2D(8, 16, 1, stride=2)
            self.fc = L.Linear(16, 10)

    def forward(self, x):
        h = F.relu(self.b1(self.c1(x)))
        h = F.relu(self.b2(self.c2(h)) + h[:, :, ::2, ::2])
        h = F.relu(self.c3(h))
        return self.fc(F.average_pooling_2d(h, h.shape[2:]))


def test_tiny_net_trains_identically():
    rng = np.random.RandomState(0)
    xs = rng.randn(6, 16, 3, 12, 12).astype(np.float32)
    ts = rng.randint(0, 10, (6, 16)).astype(np.int32)
    base = _TinyNet()
    results = {}
    for flag in (True, False):
        model = base.copy(mode="copy")
        opt = chainer.optimizers.MomentumSGD(0.05)
        opt.setup(model)
        losses = []
        with cpu_fast.enabled(flag):
            for x, t in zip(xs, ts, strict=True):
                loss = F.softmax_cross_entropy(model(x), t)
                model.cleargrads()
                loss.backward()
                opt.update()
                losses.append(float(loss.array))
            with chainer.using_config("train", False):
                pred = model(xs[0]).array
        results[flag] = (losses, pred, {k: v.array.copy() for k, v in model.namedparams()})
        results[flag][2].update({"rm": model.b1.avg_mean.copy(), "rv": model.b2.avg_var.copy()})
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-4)
    np.testing.assert_allclose(results[True][1], results[False][1], rtol=1e-3, atol=1e-4)
    for k, v in results[False][2].items():
        np.testing.assert_allclose(results[True][2][k], v, rtol=1e-3, atol=1e-4, err_msg=k)


def test_batch_normalization_dispatch(monkeypatch):
    calls = []
    orig = cpu_fast._Wide.dot
    monkeypatch.setattr(cpu_fast._Wide, "dot", lambda *a: calls.append(1) or orig(*a))
    x = np.random.randn(4, 3, 5, 5).astype(np.float32)
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    with cpu_fast.enabled(False):
        F.batch_normalization(x, gamma, beta)
    assert not calls
    F.batch_normalization(x, gamma, beta)
    assert calls
    x2 = np.random.randn(4, 3).astype(np.float32)  # 2-D input keeps Chainer's own code
    calls.clear()
    F.batch_normalization(x2, gamma, beta)
    assert not calls


def test_reused_pad_buffer_has_clean_border():
    # h=8 and h=7 give the same padded buffer shape for k=3, stride 2, pad 1: the second call
    # must not see the first call's last row through the (reused) zero border.
    rng = np.random.RandomState(5)
    W = rng.randn(4, 3, 3, 3).astype(np.float32)
    for h in (8, 7, 8, 7):
        x = rng.randn(2, 3, h, h).astype(np.float32)
        y = F.convolution_2d(x, W, stride=2, pad=1)
        assert isinstance(y.creator, cpu_fast.FastConvolution2D)
        with cpu_fast.enabled(False):
            ref = F.convolution_2d(x, W, stride=2, pad=1)
        np.testing.assert_allclose(y.array, ref.array, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------
# worker threads
# ----------------------------------------------------------------------------


@pytest.fixture
def two_threads():
    """Run the fast path on two worker threads (restored to the default afterwards)."""
    if cpu_fast.set_threads(2) != 2:
        cpu_fast.set_threads(None)
        pytest.skip("NumPy's BLAS threads cannot be pinned here (threadpoolctl)")
    yield
    cpu_fast.set_threads(None)


@pytest.mark.parametrize("case", [CONV_CASES[i] for i in (0, 1, 2, 3, 9)])
@pytest.mark.parametrize("chunk", [1, 1 << 30])
def test_threaded_conv_equals_one_thread(two_threads, monkeypatch, case, chunk, conv_path):
    # chunk=1 cuts every image into single output rows, 1 << 30 keeps each part whole
    monkeypatch.setattr(cpu_fast, "CHUNK_BYTES", chunk)
    n, c, h, w, co, k, s, p, g, bias = case
    case = (5, c, h, w, co, k, s, p, g, bias)  # odd batch: unequal parts
    two = _conv_both(case, dtype=np.float64)[True]
    assert cpu_fast.set_threads(1) == 1
    one = _conv_both(case, dtype=np.float64)
    for a, b, ref in zip(two, one[True], one[False], strict=True):
        if ref is None:
            continue
        a, b, ref = (v.array if isinstance(v, chainer.Variable) else v for v in (a, b, ref))
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a, ref, rtol=1e-10, atol=1e-10)


def test_workers_wait_for_every_task_and_raise(monkeypatch):
    monkeypatch.setattr(cpu_fast, "TASKS_PER_THREAD", 4)  # 8 tasks of one image each
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
            cpu_fast._WORKERS.run(fn, 8)
        # nothing still runs once run() has returned or raised, and the failure stopped
        # the threads from taking the remaining tasks
        assert sorted(finished + [1]) == sorted(running)
        assert len(running) < 8
    finally:
        cpu_fast.set_threads(None)


def test_workers_results_in_task_order(two_threads, monkeypatch):
    monkeypatch.setattr(cpu_fast, "TASKS_PER_THREAD", 3)
    res = cpu_fast._WORKERS.run(lambda a, b: (a, b), 10)
    assert res == sorted(res) and res[0][0] == 0 and res[-1][1] == 10
    assert all(p[1] == q[0] for p, q in zip(res, res[1:], strict=False))


def test_blas_threads_restored_after_a_parallel_region(two_threads):
    libs = cpu_fast._blas_controllers()
    before = [lib.num_threads for lib in libs]
    seen = []
    cpu_fast._WORKERS.run(lambda a, b: seen.append([lib.num_threads for lib in libs]), 2)
    assert all(v == [1] * len(libs) for v in seen)
    assert [lib.num_threads for lib in libs] == before


def test_without_threadpoolctl_runs_on_one_thread(monkeypatch):
    monkeypatch.setattr(cpu_fast, "_blas_controllers", lambda: None)
    try:
        assert cpu_fast.set_threads(4) == 1
        out = _conv_both(CONV_CASES[0])
        np.testing.assert_allclose(out[True][0].array, out[False][0].array, rtol=1e-4, atol=1e-4)
    finally:
        monkeypatch.undo()
        cpu_fast.set_threads(None)


@pytest.mark.parametrize("nhwc", [False, True])
def test_elementwise_functions_match_chainer(two_threads, monkeypatch, nhwc):
    monkeypatch.setattr(cpu_fast, "PARALLEL_MIN_SIZE", 1 << 12)
    rng = np.random.RandomState(2)
    shape = (6, 8, 40, 40)  # above PARALLEL_MIN_SIZE: split over the threads
    assert np.prod(shape) >= cpu_fast.PARALLEL_MIN_SIZE
    x0 = rng.randn(*shape).astype(np.float32)
    x1 = rng.randn(*shape).astype(np.float32)
    if nhwc:  # the memory layout the fast convolution produces
        x0, x1 = (
            np.ascontiguousarray(v.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2) for v in (x0, x1)
        )
    gy = rng.randn(*shape).astype(np.float32)
    out = {}
    for flag in (True, False):
        with cpu_fast.enabled(flag):
            a = chainer.Variable(x0.copy(order="K"))
            b = chainer.Variable(x1.copy(order="K"))
            y = F.relu(a + b) + F.relu(a)
            y.grad = gy
            y.backward()
            out[flag] = (y.array, a.grad, b.grad)
    for fast, ref in zip(out[True], out[False], strict=True):
        np.testing.assert_array_equal(fast, ref)
    if nhwc:
        assert out[True][0].transpose(0, 2, 3, 1).flags.c_contiguous  # layout kept


def test_batch_normalization_many_blocks_and_large_mean(two_threads, monkeypatch):
    monkeypatch.setattr(cpu_fast, "PARALLEL_MIN_SIZE", 1)
    # tiny blocks: the per-block statistics are merged (Chan et al.) across many blocks and
    # both threads; a large common offset checks the variance does not cancel
    monkeypatch.setattr(cpu_fast, "BN_BLOCK_BYTES", 1)
    rng = np.random.RandomState(4)
    x = (rng.randn(7, 3, 9, 9) * 0.01 + 1000.0).astype(np.float64)
    gamma, beta = rng.randn(3), rng.randn(3)
    gy = rng.randn(*x.shape)
    out = {}
    for flag in (True, False):
        with cpu_fast.enabled(flag):
            xv = chainer.Variable(x.copy())
            gv, bv = chainer.Variable(gamma.copy()), chainer.Variable(beta.copy())
            y = F.batch_normalization(xv, gv, bv, eps=1e-5)
            y.grad = gy
            y.backward()
            out[flag] = (y.array, xv.grad, gv.grad, bv.grad)
    for fast, ref in zip(out[True], out[False], strict=True):
        np.testing.assert_allclose(fast, ref, rtol=1e-7, atol=1e-7)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_keep_freed_memory_avoids_page_faults():
    import resource

    assert cpu_fast._keep_freed_memory()
    a = np.ones(4 << 20, dtype=np.float32)  # 16 MB
    del a
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        b = np.empty(4 << 20, dtype=np.float32)
        b.fill(1.0)
        del b
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 1000  # ~4096 per fresh 16 MB array without it


def test_relu_grad_of_a_broadcast_keeps_channels_last(two_threads, monkeypatch):
    monkeypatch.setattr(cpu_fast, "PARALLEL_MIN_SIZE", 1 << 12)
    # global average pooling sends back a broadcast gradient (zero strides); the ReLU
    # gradient must come out in the activation's channels-last memory, as NumPy's own
    # order choice gives, or every later fast-path call would copy it back
    x = np.ascontiguousarray(np.random.randn(8, 40, 40, 16).astype(np.float32))
    xv = chainer.Variable(x.transpose(0, 3, 1, 2))
    y = F.relu(xv)
    F.sum(F.mean(y, axis=(2, 3))).backward()
    assert xv.grad.transpose(0, 2, 3, 1).flags.c_contiguous
    np.testing.assert_array_equal(xv.grad, (xv.array > 0) / np.float32(1600))


def test_array_pool_reuses_only_unreferenced_blocks(monkeypatch):
    monkeypatch.setattr(cpu_fast, "POOL_MIN_BYTES", 1024)
    pool = cpu_fast._ArrayPool()
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
    monkeypatch.setattr(cpu_fast, "POOL_MIN_BYTES", 1024)
    monkeypatch.setattr(cpu_fast, "POOL_MAX_BYTES", 5000)
    pool = cpu_fast._ArrayPool()
    kept = [pool.empty((512,), np.float32), pool.empty((512,), np.float32)]
    assert pool.bytes == 4096
    extra = pool.empty((512,), np.float32)  # would exceed the cap: not pooled
    assert extra.base is None and pool.bytes == 4096
    assert all(k.base is not None for k in kept)
