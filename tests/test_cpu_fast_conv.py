"""Tests for :mod:`chainer_nets.cpu_fast.conv` and its kernels: the fast convolution against
Chainer's own."""

from __future__ import annotations  # noqa: I001  (chainer_nets must be imported before chainer)

import chainer_nets  # noqa: F401  (installs the NumPy-2 compat layer first)
import numpy as np
import pytest

import chainer
import chainer.functions as F
from chainer import gradient_check
from chainer_nets import cpu_fast
from chainer_nets.cpu_fast import conv, conv_kernels, im2col, layout, workers
from cpu_fast_support import CONV_CASES, conv_both
import cpu_fast_support

two_threads = cpu_fast_support.two_threads


@pytest.fixture(params=["kernel-width im2col", "full im2col"])
def conv_path(request, monkeypatch):
    """Run a test on each of the two stride-1 convolution paths, whatever the sizes."""
    if request.param == "kernel-width im2col":
        monkeypatch.setattr(im2col, "ROWS_MIN_PIXELS", 1)
        monkeypatch.setattr(im2col, "ROWS_MIN_K", 1)
    else:
        monkeypatch.setattr(im2col, "ROWS_MIN_PIXELS", 1 << 30)
    monkeypatch.setattr(conv_kernels, "DENSE_MIN_ROWS", 1)  # split even tiny batches over threads
    return request.param


def test_conv_paths_are_chosen_by_size():
    g = layout._Geom((8, 16, 32, 32), (16, 16, 3, 3), (1, 1), (1, 1), 1)
    assert im2col._use_rows(g)  # a CIFAR ResNet stage-1 layer
    small = layout._Geom((8, 512, 2, 2), (512, 512, 3, 3), (1, 1), (1, 1), 1)
    rgb = layout._Geom((8, 3, 32, 32), (16, 3, 3, 3), (1, 1), (1, 1), 1)
    strided = layout._Geom((8, 16, 32, 32), (32, 16, 3, 3), (2, 2), (1, 1), 1)
    assert not any(im2col._use_rows(v) for v in (small, rgb, strided))


def test_short_convolutions_choose_their_path():
    """A convolution too short to split over the workers takes the kernel-width path only on
    maps of 16x16 and more, and a weight-bound one is left to Chainer's function."""
    g8 = layout._Geom((16, 640, 8, 8), (640, 640, 3, 3), (1, 1), (1, 1), 1)
    assert im2col._use_rows(g8) and not im2col._use_rows(g8, split=False)
    g16 = layout._Geom((4, 64, 16, 16), (64, 64, 3, 3), (1, 1), (1, 1), 1)
    assert im2col._use_rows(g16, split=False)
    assert conv_kernels.weight_bound(16, 2, 2, 512 * 9, 1)  # VGG's last stage at batch 16
    assert not conv_kernels.weight_bound(16, 8, 8, 640 * 9, 1)  # WRN-28-10's last stage
    assert not conv_kernels.weight_bound(16, 2, 2, 512 * 9, 512)  # depthwise: never
    assert not conv_kernels.weight_bound(512, 2, 2, 512 * 9, 1)  # enough rows to split
    rng = np.random.RandomState(0)
    x = rng.randn(2, 64, 2, 2).astype(np.float32)
    W = rng.randn(64, 64, 3, 3).astype(np.float32)
    with cpu_fast.enabled(True):
        y = F.convolution_2d(x, W, pad=1)  # 8 output rows, K = 576: weight-bound
        y_fast = F.convolution_2d(np.tile(x, (8, 1, 4, 4)), W, pad=1)  # 1,024 rows: not
    assert y.creator.__class__ is not conv.FastConvolution2D
    assert y_fast.creator.__class__ is conv.FastConvolution2D
    with cpu_fast.enabled(False):
        np.testing.assert_array_equal(y.array, F.convolution_2d(x, W, pad=1).array)


def test_chunks_are_cache_sized_only_inside_the_pinned_workers(two_threads):
    """Inside ``run`` each worker's BLAS has one thread: cache-sized chunks. Outside it (a
    convolution too short to split) BLAS runs its own threads: the larger chunks."""
    per_row = 1000
    outside = workers._WORKERS.chunk_rows(per_row)
    inside = workers._WORKERS.run(lambda a, b: workers._WORKERS.chunk_rows(per_row), 4)
    assert outside == workers.UNPINNED_CHUNK_BYTES // per_row
    assert set(inside) == {workers.CHUNK_BYTES // per_row}


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_chainer(case, conv_path):
    out = conv_both(case)
    assert out[True][0].creator.__class__ is conv.FastConvolution2D
    assert out[False][0].creator.__class__ is not conv.FastConvolution2D
    for a, b in zip(out[True], out[False], strict=True):
        if b is None:
            continue
        a = a.array if isinstance(a, chainer.Variable) else a
        b = b.array if isinstance(b, chainer.Variable) else b
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunk", [1, 3000])
def test_conv_chunked_im2col_matches(monkeypatch, chunk, conv_path):
    monkeypatch.setattr(workers, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(workers, "UNPINNED_CHUNK_BYTES", chunk)
    cpu_fast.release_buffers()
    for case in (CONV_CASES[0], CONV_CASES[1], CONV_CASES[9]):
        out = conv_both(case)
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
        return conv.FastConvolution2D(conv._pair(s), conv._pair(p), g).apply(a)[0]

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
        assert isinstance(F.convolution_2d(x, W).creator, conv.FastConvolution2D)
        y = F.convolution_2d(x, W, dilate=2)
        assert not isinstance(y.creator, conv.FastConvolution2D)
        y = F.convolution_2d(x, W, cover_all=True, stride=2)
        assert not isinstance(y.creator, conv.FastConvolution2D)
        y = F.convolution_2d(x, W.array.astype(np.float64))
        assert not isinstance(y.creator, conv.FastConvolution2D)


def test_reused_pad_buffer_has_clean_border():
    # h=8 and h=7 give the same padded buffer shape for k=3, stride 2, pad 1: the second call
    # must not see the first call's last row through the (reused) zero border.
    rng = np.random.RandomState(5)
    W = rng.randn(4, 3, 3, 3).astype(np.float32)
    for h in (8, 7, 8, 7):
        x = rng.randn(2, 3, h, h).astype(np.float32)
        y = F.convolution_2d(x, W, stride=2, pad=1)
        assert isinstance(y.creator, conv.FastConvolution2D)
        with cpu_fast.enabled(False):
            ref = F.convolution_2d(x, W, stride=2, pad=1)
        np.testing.assert_allclose(y.array, ref.array, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", [CONV_CASES[i] for i in (0, 1, 2, 3, 9)])
@pytest.mark.parametrize("chunk", [1, 1 << 30])
def test_threaded_conv_equals_one_thread(two_threads, monkeypatch, case, chunk, conv_path):
    # chunk=1 cuts every image into single output rows, 1 << 30 keeps each part whole
    monkeypatch.setattr(workers, "CHUNK_BYTES", chunk)
    n, c, h, w, co, k, s, p, g, bias = case
    case = (5, c, h, w, co, k, s, p, g, bias)  # odd batch: unequal parts
    two = conv_both(case, dtype=np.float64)[True]
    assert cpu_fast.set_threads(1) == 1
    one = conv_both(case, dtype=np.float64)
    for a, b, ref in zip(two, one[True], one[False], strict=True):
        if ref is None:
            continue
        a, b, ref = (v.array if isinstance(v, chainer.Variable) else v for v in (a, b, ref))
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a, ref, rtol=1e-10, atol=1e-10)


GROUPED_CASES = [
    # (n, c, h, w, co, k, stride, pad, groups, bias): ResNeXt- and Xception-like shapes
    (3, 32, 10, 10, 32, 3, 1, 1, 8, False),  # 8 groups of 4 channels
    (3, 32, 10, 9, 64, 3, 2, 1, 8, True),  # strided, 8 outputs per group
    (2, 16, 12, 12, 32, 1, 1, 0, 4, True),  # grouped 1x1
    (3, 16, 9, 9, 16, 3, 1, 1, 16, False),  # depthwise
    (2, 8, 9, 10, 16, 3, 2, 1, 8, True),  # depthwise, channel multiplier 2, strided
    (2, 12, 7, 7, 12, 5, 1, 2, 12, False),  # depthwise 5x5
]


@pytest.mark.parametrize("case", GROUPED_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grouped_and_depthwise_match_chainer(case, dtype, monkeypatch):
    monkeypatch.setattr(workers, "CHUNK_BYTES", 4096)  # several pieces per image range
    monkeypatch.setattr(conv_kernels, "DENSE_MIN_ROWS", 1)  # split even tiny batches
    out = conv_both(case, dtype=dtype)
    assert out[True][0].creator.__class__ is conv.FastConvolution2D  # no fallback
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for a, b in zip(out[True], out[False], strict=True):
        if b is None:
            continue
        a = a.array if isinstance(a, chainer.Variable) else a
        b = b.array if isinstance(b, chainer.Variable) else b
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    cpu_fast.release_buffers()


@pytest.mark.parametrize("case", [GROUPED_CASES[i] for i in (1, 4)])
def test_grouped_check_backward(case):
    n, c, h, w, co, k, s, p, g, bias = case
    rng = np.random.RandomState(6)
    args = [rng.randn(n, c, h, w), rng.randn(co, c // g, k, k)] + ([rng.randn(co)] if bias else [])
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    gy = rng.randn(n, co, ho, wo)

    def f(*a):
        return conv.FastConvolution2D((s, s), (p, p), g).apply(a)[0]

    with cpu_fast.enabled(True):
        gradient_check.check_backward(f, tuple(args), gy, dtype=np.float64, atol=1e-6, rtol=1e-5)
