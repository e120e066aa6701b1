"""Helpers shared by the tests of the CPU fast path: convolution cases, a two-thread fixture,
and the whole-network check that the fast path and Chainer's default path agree."""

from __future__ import annotations  # noqa: I001  (chainer_nets must be imported before chainer)

import chainer_nets  # noqa: F401  (installs the NumPy-2 compat layer first)
import numpy as np
import pytest

import chainer
import chainer.functions as F

from chainer_nets import cpu_fast

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


def conv_both(case, dtype=np.float32, seed=0):
    """Run one convolution case with the fast path on and off: ``{flag: (y, gx, gW, gb)}``."""
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


@pytest.fixture
def two_threads():
    """Run the fast path on two worker threads (restored to the default afterwards)."""
    if cpu_fast.set_threads(2) != 2:
        cpu_fast.set_threads(None)
        pytest.skip("NumPy's BLAS threads cannot be pinned here (threadpoolctl)")
    yield
    cpu_fast.set_threads(None)


def assert_fast_path_matches_default(net, x, t) -> None:
    """One training-mode forward and backward of ``net`` on each CPU path: same loss, same grads.

    Skips when the fast path is switched off for the test run (``CHAINER_NETS_CPU_FAST=0``).
    Reseed NumPy before calling if ``net`` has stochastic layers drawn from its global state."""
    if not cpu_fast.is_installed():
        pytest.skip("the CPU fast path is switched off (CHAINER_NETS_CPU_FAST=0)")
    out = []
    for fast in (False, True):
        with cpu_fast.enabled(fast), chainer.using_config("train", True):
            loss = F.softmax_cross_entropy(net(x), t)
            net.cleargrads()
            loss.backward()
        out.append((float(loss.array), {n: p.grad.copy() for n, p in net.namedparams()}))
    (l0, g0), (l1, g1) = out
    assert l1 == pytest.approx(l0, rel=1e-5)
    for name in g0:
        np.testing.assert_allclose(g1[name], g0[name], rtol=1e-3, atol=1e-5, err_msg=name)
