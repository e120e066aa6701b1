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


def test_stage_plan_strides_widths_and_positions():
    from chainer_nets.blocks import stage_plan

    plan = list(stage_plan(16, (16, 32, 64), 2))
    assert [(b.in_ch, b.out_ch, b.stride) for b in plan] == [
        (16, 16, 1),
        (16, 16, 1),
        (16, 32, 2),
        (32, 32, 1),
        (32, 64, 2),
        (64, 64, 1),
    ]
    assert [(b.stage, b.index) for b in plan] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    # per-stage depths, and blocks that output ``expansion`` times their width (bottlenecks)
    plan = list(stage_plan(16, (16, 32), (1, 2), expansion=4))
    assert [(b.in_ch, b.out_ch, b.stride) for b in plan] == [(16, 16, 1), (64, 32, 2), (128, 32, 1)]


def test_init_scheme_is_scoped_and_read_by_conv_and_bn():
    from chainer_nets.blocks import (
        FB_RESNET_TORCH,
        TORCH_FAN_IN,
        bn,
        conv3x3,
        current_init_scheme,
        init_scheme,
    )

    np.random.seed(0)
    assert current_init_scheme() == FB_RESNET_TORCH
    with init_scheme(TORCH_FAN_IN):
        conv, norm = conv3x3(256, 16), bn(4096)
    assert current_init_scheme() == FB_RESNET_TORCH
    assert abs(conv.W.array.std() - np.sqrt(2 / (256 * 9))) < 0.03 * np.sqrt(2 / (256 * 9))
    g = norm.gamma.array
    assert 0 <= g.min() and g.max() < 1 and abs(g.mean() - 0.5) < 0.02
    default_conv, default_bn = conv3x3(256, 16), bn(8)
    assert abs(default_conv.W.array.std() - np.sqrt(2 / (16 * 9))) < 0.03 * np.sqrt(2 / (16 * 9))
    assert default_bn.gamma.array.tolist() == [1.0] * 8
    with pytest.raises(ValueError):
        from chainer_nets.blocks import InitScheme

        InitScheme("fan_avg", "one", "")


class _FakeRandom:
    """The part of cupy.random that bernoulli_mask uses, recording the dtype asked for."""

    def __init__(self):
        self.dtypes = []

    def random_sample(self, size, dtype=np.float64):
        self.dtypes.append(np.dtype(dtype))
        return np.random.random_sample(size).astype(dtype)


def test_bernoulli_mask_draws_single_precision_off_the_host(monkeypatch):
    """On a device array module (CuPy) the uniforms are float32, half the bytes of float64."""
    import types

    from chainer_nets import blocks

    fake = types.SimpleNamespace(random=_FakeRandom())
    monkeypatch.setattr(chainer.backend, "get_array_module", lambda *a: fake)
    like = np.zeros((2, 3, 4, 4), np.float16)
    m = blocks.bernoulli_mask(like, 0.5)
    assert fake.random.dtypes == [np.dtype(np.float32)]
    assert m.dtype == np.float16 and m.shape == like.shape and set(np.unique(m)) <= {0, 1}


def test_bernoulli_mask_on_numpy_keeps_the_seeded_stream():
    from chainer_nets import blocks

    like = np.zeros((3, 5), np.float32)
    np.random.seed(4)
    m = blocks.bernoulli_mask(like, 0.3)
    np.random.seed(4)
    assert np.array_equal(m, (np.random.random_sample((3, 5)) < 0.3).astype(np.float32))


def test_host_draws_come_from_the_seeded_numpy_stream():
    from chainer_nets import blocks

    np.random.seed(7)
    a, b, c = blocks.host_uniform(), blocks.host_uniform(3), blocks.host_randint(5)
    np.random.seed(7)
    assert a == np.random.random_sample() and np.array_equal(b, np.random.random_sample(3))
    assert c == np.random.randint(5) and isinstance(a, float) and isinstance(c, int)
