"""Tests for :mod:`chainer_nets.cpu_fast.bn`: the fast batch normalization against Chainer's own."""

from __future__ import annotations  # noqa: I001  (chainer_nets must be imported before chainer)

import chainer_nets  # noqa: F401  (installs the NumPy-2 compat layer first)
import numpy as np
import pytest

import chainer
import chainer.functions as F
from chainer import gradient_check
from chainer_nets import cpu_fast
from chainer_nets.cpu_fast import bn, workers
import cpu_fast_support

two_threads = cpu_fast_support.two_threads


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


def test_batch_normalization_dispatch(monkeypatch):
    calls = []
    orig = bn._Wide.dot
    monkeypatch.setattr(bn._Wide, "dot", lambda *a: calls.append(1) or orig(*a))
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


def test_batch_normalization_many_blocks_and_large_mean(two_threads, monkeypatch):
    monkeypatch.setattr(workers, "PARALLEL_MIN_SIZE", 1)
    # tiny blocks: the per-block statistics are merged (Chan et al.) across many blocks and
    # both threads; a large common offset checks the variance does not cancel
    monkeypatch.setattr(bn, "BN_BLOCK_BYTES", 1)
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


def test_subclassed_bn_implementation_keeps_chainers_code() -> None:
    """ChainerMN's synchronised BN overrides the statistics methods of Chainer's generic
    implementation; the fast path must leave such a subclass alone, or the ranks' statistics
    would silently stay per rank."""
    from chainer.functions.normalization import batch_normalization as bn_mod
    from chainermn.functions.batch_normalization import _MpiImpl

    class HalfMeanComm:  # stands in for the communicator: every "global mean" is halved
        def _multi_node_mean(self, _, array: np.ndarray) -> None:
            array *= 0.5

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    gamma, beta = np.ones(3, np.float32), np.zeros(3, np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)

    def run(fast: bool) -> tuple:
        with chainer.using_config("cpu_fast", fast):
            impl = _MpiImpl(HalfMeanComm())
            fn = bn_mod.BatchNormalization(impl_selector=lambda *_: impl)
            xv = chainer.Variable(x)
            (y,) = fn.apply((xv, gamma, beta))
            y.grad = gy
            y.backward()
            return y.array, xv.grad

    y_fast, gx_fast = run(True)
    y_ref, gx_ref = run(False)
    np.testing.assert_allclose(y_fast, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx_fast, gx_ref, rtol=1e-5, atol=1e-5)
    plain = chainer.functions.batch_normalization(x, gamma, beta).array
    assert np.abs(y_ref - plain).max() > 0.1  # the halved statistics did take effect
