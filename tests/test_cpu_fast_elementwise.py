"""Tests for :mod:`chainer_nets.cpu_fast.elementwise`: ReLU, its gradient and the addition."""

from __future__ import annotations  # noqa: I001  (chainer_nets must be imported before chainer)

import chainer_nets  # noqa: F401  (installs the NumPy-2 compat layer first)
import numpy as np
import pytest

import chainer
import chainer.functions as F
from chainer_nets import cpu_fast
from chainer_nets.cpu_fast import workers
import cpu_fast_support

two_threads = cpu_fast_support.two_threads


@pytest.mark.parametrize("nhwc", [False, True])
def test_elementwise_functions_match_chainer(two_threads, monkeypatch, nhwc):
    monkeypatch.setattr(workers, "PARALLEL_MIN_SIZE", 1 << 12)
    rng = np.random.RandomState(2)
    shape = (6, 8, 40, 40)  # above PARALLEL_MIN_SIZE: split over the threads
    assert np.prod(shape) >= workers.PARALLEL_MIN_SIZE
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


def test_relu_grad_of_a_broadcast_keeps_channels_last(two_threads, monkeypatch):
    monkeypatch.setattr(workers, "PARALLEL_MIN_SIZE", 1 << 12)
    # global average pooling sends back a broadcast gradient (zero strides); the ReLU
    # gradient must come out in the activation's channels-last memory, as NumPy's own
    # order choice gives, or every later fast-path call would copy it back
    x = np.ascontiguousarray(np.random.randn(8, 40, 40, 16).astype(np.float32))
    xv = chainer.Variable(x.transpose(0, 3, 1, 2))
    y = F.relu(xv)
    F.sum(F.mean(y, axis=(2, 3))).backward()
    assert xv.grad.transpose(0, 2, 3, 1).flags.c_contiguous
    np.testing.assert_array_equal(xv.grad, (xv.array > 0) / np.float32(1600))
