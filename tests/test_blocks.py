"""Tests for shared pieces in :mod:`chainer_nets.blocks`."""

from __future__ import annotations  # noqa: I001  (chainer_nets must be imported before chainer)

import chainer_nets  # noqa: F401  (installs the NumPy-2 compat layer first)
import numpy as np
import pytest

import chainer
import chainer.functions as F
from chainer import gradient_check
from chainer_nets.blocks import ZeroPadShortcut, zero_pad_shortcut


@pytest.mark.parametrize("stride,out_ch", [(2, 8), (2, 4), (1, 6), (3, 7)])
def test_zero_pad_shortcut_is_subsample_then_zero_channels(stride, out_ch):
    x = np.random.RandomState(0).randn(2, 4, 7, 6).astype(np.float32)
    y = zero_pad_shortcut(chainer.Variable(x), out_ch, stride).array
    sub = x[:, :, ::stride, ::stride]
    assert y.shape == (2, out_ch) + sub.shape[2:]
    np.testing.assert_array_equal(y[:, :4], sub)
    assert not y[:, 4:].any()
    # the same as the textbook slice + concatenation
    ref = F.concat((sub, np.zeros((2, out_ch - 4) + sub.shape[2:], np.float32)), axis=1)
    np.testing.assert_array_equal(y, ref.array)


def test_zero_pad_shortcut_identity_when_nothing_changes():
    x = chainer.Variable(np.ones((1, 3, 4, 4), np.float32))
    assert zero_pad_shortcut(x, 3, 1) is x


def test_zero_pad_shortcut_gradients():
    rng = np.random.RandomState(1)
    x = rng.randn(2, 3, 5, 5)
    gy = rng.randn(2, 5, 3, 3)
    ggx = rng.randn(*x.shape)

    def f(v):
        return ZeroPadShortcut(5, 2).apply((v,))[0]

    gradient_check.check_backward(f, x, gy, dtype=np.float64)
    gradient_check.check_double_backward(f, x, gy, ggx, dtype=np.float64)


def test_zero_pad_shortcut_keeps_channels_last_memory():
    x = np.ascontiguousarray(np.ones((2, 6, 6, 4), np.float32)).transpose(0, 3, 1, 2)
    xv = chainer.Variable(x)
    y = zero_pad_shortcut(xv, 8, 2)
    assert y.array.transpose(0, 2, 3, 1).flags.c_contiguous
    y.grad = np.ones((2, 3, 3, 8), np.float32).transpose(0, 3, 1, 2)  # as the fast path gives
    y.backward()
    assert xv.grad.transpose(0, 2, 3, 1).flags.c_contiguous
    assert xv.grad[:, :, ::2, ::2].all() and xv.grad.sum() == 2 * 4 * 3 * 3


def test_zero_pad_shortcut_cannot_drop_channels():
    with pytest.raises(ValueError, match="cannot drop channels"):
        zero_pad_shortcut(chainer.Variable(np.ones((1, 4, 2, 2), np.float32)), 2, 2)
