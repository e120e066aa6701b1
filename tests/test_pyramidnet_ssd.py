"""PyramidNet with separated stochastic depth (paper 24): gates, schedule, test mode, counts."""

from __future__ import annotations

import math

import chainer
import chainer.functions as F
import numpy as np
import pytest

import chainer_nets  # noqa: F401  (applies the compat layer)
from chainer_nets.models.pyramidnet import pyramid_shortcut
from chainer_nets.models.pyramidnet_ssd import PyramidSepDrop, SeparatedDropUnit
from chainer_nets.registry import count_params, get_model, get_model_info


def test_parameter_counts() -> None:
    """The separation adds no parameter: PyramidSepDrop-110 (alpha 270) is PyramidNet-110's
    28,435,669 weights exactly. The 182/alpha-150 net has 16,576,717 weights (16.6M; the 2016
    index lists 16.5M for a different implementation of it: floored widths, another head)."""
    sep110 = get_model("pyramidnet110_a270_sepdrop")
    assert count_params(sep110, "weights") == 28_435_669
    assert count_params(sep110) == count_params(get_model("pyramidnet110_a270")) == 28_485_477
    sep182 = get_model("pyramidnet182_a150_sepdrop")
    assert (count_params(sep182, "weights"), count_params(sep182)) == (16_576_717, 16_626_381)
    assert len(sep182.units) == 90 and sep182.channels[-1] == 166


def test_linear_survival_schedule() -> None:
    """p_l = 1 - (l / L)(1 - p_L) with p_L = 0.5, the same p_l for both parts of unit l."""
    net = get_model("pyramidnet110_a270_sepdrop")
    assert np.allclose(net.survival, [1 - 0.5 * k / 54 for k in range(1, 55)])
    assert net.survival[-1] == pytest.approx(0.5)


def _stub_ones(unit: SeparatedDropUnit) -> None:
    """Replace the branch by ones, so (output - shortcut) is the gate itself."""

    def ones(x: chainer.Variable) -> chainer.Variable:
        shape = (x.shape[0], unit.out_ch, x.shape[2] // unit.stride, x.shape[3] // unit.stride)
        return chainer.Variable(np.ones(shape, np.float32))

    unit.unit.residual = ones


def _gates(unit: SeparatedDropUnit, x: np.ndarray) -> np.ndarray:
    y = unit(x).array - pyramid_shortcut(x, unit.out_ch, unit.stride).array
    return y[0, :, 0, 0]


def test_empirical_drop_rates_and_independence() -> None:
    """In training each part of unit l survives with frequency p_l, the two parts
    independently (joint survival p_l^2), each part all-or-nothing over its channels."""
    np.random.seed(0)
    net = PyramidSepDrop(20, 12)  # widths 17..28, survival 1 - l/18 .. 0.5
    trials = 1500
    with chainer.using_config("train", True), chainer.no_backprop_mode():
        for unit in net.units[::4]:  # units 1, 5, 9: p = 0.94, 0.72, 0.5
            _stub_ones(unit)
            x = np.random.randint(0, 4, (1, unit.in_ch, 4, 4)).astype(np.float32)  # exact sums
            n_old = unit.in_ch
            both = old = new = 0
            for _ in range(trials):
                g = _gates(unit, x)
                assert set(np.unique(g[:n_old])) <= {0.0, 1.0}
                assert len(set(g[:n_old])) == 1 and len(set(g[n_old:])) == 1
                old += g[0] == 1
                new += g[-1] == 1
                both += g[0] == 1 and g[-1] == 1
            p = unit.survival
            sd = math.sqrt(trials * p * (1 - p))
            assert abs(old - trials * p) <= 4 * sd + 1, (old, p)
            assert abs(new - trials * p) <= 4 * sd + 1, (new, p)
            sd2 = math.sqrt(trials * p * p * (1 - p * p))
            assert abs(both - trials * p * p) <= 4 * sd2 + 1, (both, p)
    # the schedule spans 0.94 .. 0.5, so the check is not vacuous
    assert net.survival[0] > 0.94 and net.survival[-1] == pytest.approx(0.5)


def test_separate_false_is_one_gate_for_the_whole_branch() -> None:
    np.random.seed(1)
    net = PyramidSepDrop(20, 12, separate=False)
    unit = net.units[-1]
    _stub_ones(unit)
    x = np.random.randint(0, 4, (1, unit.in_ch, 4, 4)).astype(np.float32)  # exact sums
    seen = set()
    with chainer.using_config("train", True), chainer.no_backprop_mode():
        for _ in range(200):
            g = _gates(unit, x)
            assert len(set(g)) == 1
            seen.add(float(g[0]))
    assert seen == {0.0, 1.0}


def test_test_mode_scales_by_survival_and_is_deterministic() -> None:
    np.random.seed(2)
    net = PyramidSepDrop(20, 12)
    unit = net.units[4]
    x = np.random.randn(2, unit.in_ch, 8, 8).astype(np.float32)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        y1, y2 = unit(x).array, unit(x).array
        f = unit.unit.residual(x).array
    np.testing.assert_array_equal(y1, y2)
    expected = pyramid_shortcut(x, unit.out_ch, 1).array + unit.survival * f
    np.testing.assert_allclose(y1, expected, rtol=1e-5, atol=1e-6)
    assert unit.survival < 0.9
    # whole network: deterministic in test mode, random in training
    xs = np.random.randn(2, 3, 16, 16).astype(np.float32)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        np.testing.assert_array_equal(net(xs).array, net(xs).array)
    with chainer.using_config("train", True), chainer.no_backprop_mode():
        assert len({net(xs).array.tobytes() for _ in range(8)}) > 1


def test_gates_follow_the_seeded_generator() -> None:
    net = PyramidSepDrop(20, 12)
    x = np.random.RandomState(3).randn(2, 3, 16, 16).astype(np.float32)
    outs = []
    for _ in range(2):
        np.random.seed(5)
        with chainer.using_config("train", True), chainer.no_backprop_mode():
            outs.append(np.stack([net(x).array for _ in range(4)]))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_dropped_unit_is_the_shortcut_and_gets_zero_gradient() -> None:
    np.random.seed(4)
    net = PyramidSepDrop(20, 12)
    unit = net.units[3]
    unit.survival = 0.0  # always dropped: both parts
    x = chainer.Variable(np.random.randn(2, unit.in_ch, 8, 8).astype(np.float32))
    with chainer.using_config("train", True):
        y = unit(x)
    np.testing.assert_array_equal(y.array, pyramid_shortcut(x.array, unit.out_ch, 2).array)
    unit.cleargrads()
    F.sum(y * y).backward()
    # the branch is computed and multiplied by zero, as in the authors' code: zero gradients
    assert all(p.grad is not None and not p.grad.any() for p in unit.params())


def test_forward_backward_small_net() -> None:
    np.random.seed(6)
    net = PyramidSepDrop(20, 12)
    x = np.random.randn(4, 3, 32, 32).astype(np.float32)
    t = np.array([0, 1, 2, 3], np.int32)
    with chainer.using_config("train", True):
        loss = F.softmax_cross_entropy(net(x), t)
    net.cleargrads()
    loss.backward()
    assert np.isfinite(float(loss.array))
    assert all(p.grad is not None and np.isfinite(p.grad).all() for p in net.params())


def test_registry_metadata() -> None:
    info = get_model_info("pyramidnet182_a150_sepdrop")
    assert (info.paper_no, info.arxiv, info.recipe) == (24, "1612.01230", "pyramidnet_sepdrop")
    assert info.paper_accuracy == 96.69 and info.paper_params is None
    assert get_model_info("pyramidnet110_a270_sepdrop").paper_accuracy is None
