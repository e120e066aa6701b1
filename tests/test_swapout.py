"""Swapout (paper 14): per-unit Bernoulli masks, Linear(1, 0.5), both inference modes."""

from __future__ import annotations

import math

import chainer
import chainer.functions as F
import numpy as np
import pytest

import chainer_nets  # noqa: F401  (applies the compat layer)
from chainer_nets.models.swapout import SwapoutResNet, SwapoutUnit, linear_schedule, swapout
from chainer_nets.registry import count_params, get_model_info


@pytest.mark.parametrize(
    "name, params, paper",
    [("swapout_v2_20_w4", 4_326_986, None), ("swapout_v2_32_w4", 7_427_146, "7.43")],
)
def test_param_count(name: str, params: int, paper: str | None) -> None:
    info = get_model_info(name)
    net = info.build()
    assert count_params(net, info.params_counting) == params
    assert info.paper_params == paper
    if paper is not None:
        assert round(params / 1e6, info.params_decimals) == info.paper_params_m
    # Basic units: two 3x3 convs per unit, 6n+2 weighted layers (excluding 1x1 projections).
    convs3 = [p for name, p in net.namedparams() if name.endswith("/W") and p.shape[-1] == 3]
    assert len(convs3) + 1 == int(name.split("_")[2])


def test_masks_are_independent_per_unit_bernoulli() -> None:
    """x = 1, F(x) = 2: each output unit reads 0, 1, 2 or 3 with probabilities
    (1-t1)(1-t2), t1(1-t2), (1-t1)t2, t1 t2."""
    np.random.seed(0)
    t1, t2 = 0.7, 0.4
    shape = (8, 16, 16, 16)
    x = np.ones(shape, np.float32)
    with chainer.using_config("train", True):
        y = swapout(x, 2 * x, t1, t2).array
    n = y.size
    expect = {0: (1 - t1) * (1 - t2), 1: t1 * (1 - t2), 2: (1 - t1) * t2, 3: t1 * t2}
    for value, p in expect.items():
        count = int((y == value).sum())
        assert abs(count - n * p) <= 4 * math.sqrt(n * p * (1 - p)), (value, count, n * p)
    # Per unit, not per layer or per sample: one sample's channels and pixels disagree.
    assert len(np.unique(y[0, 0])) == 4 and len(np.unique(y[0, :, 0, 0])) == 4


def test_masks_are_unscaled_and_inference_uses_expectation() -> None:
    x = np.full((2, 3, 4, 4), 3.0, np.float32)
    fx = np.full((2, 3, 4, 4), 5.0, np.float32)
    with chainer.using_config("train", False):
        np.testing.assert_allclose(swapout(x, fx, 0.5, 0.25).array, 0.5 * 3 + 0.25 * 5)
    with chainer.using_config("train", True):
        assert set(np.unique(swapout(x, fx, 0.5, 0.25).array)) <= {0.0, 3.0, 5.0, 8.0}


def test_linear_1_to_half_schedule() -> None:
    net = SwapoutResNet(depth=20, widen=1)
    thetas = [b.theta1 for b in net.blocks]
    assert thetas == [b.theta2 for b in net.blocks]
    assert len(thetas) == 9 and thetas[0] == 1.0 and thetas[-1] == pytest.approx(0.5)
    np.testing.assert_allclose(np.diff(thetas), -0.5 / 8)
    assert linear_schedule(5, 9) == pytest.approx(0.75)


def test_unit_deterministic_mode_is_expectation() -> None:
    np.random.seed(1)
    unit = SwapoutUnit(4, 4, 1, 0.6, 0.8)
    x = np.random.randn(2, 4, 8, 8).astype(np.float32)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        y = unit(x).array
        f = unit.residual(F.relu(unit.bn1(x))).array
    np.testing.assert_allclose(y, 0.6 * x + 0.8 * f, rtol=1e-5, atol=1e-6)


def _tiny(**kw) -> SwapoutResNet:
    return SwapoutResNet(depth=8, widen=1, **kw)  # one unit per stage, widths 16/32/64


def test_stochastic_inference_is_mean_of_30_sampled_distributions() -> None:
    np.random.seed(2)
    net = _tiny()
    assert net.inference == "stochastic" and net.samples == 30
    x = np.random.randn(2, 3, 8, 8).astype(np.float32)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        np.random.seed(5)
        out = net(x).array
        np.random.seed(5)
        with chainer.using_config("swapout_sample", True):
            probs = np.mean([F.softmax(net.logits(x)).array for _ in range(30)], axis=0)
        det = net.logits(x).array  # outside the sampling context: expectations
        again = net(x).array
    np.testing.assert_allclose(np.exp(out), probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(F.softmax(out).array, probs, rtol=1e-4, atol=1e-6)
    assert not np.allclose(out, again)  # fresh masks each call
    assert not np.allclose(np.exp(out), F.softmax(det).array, atol=1e-4)


def test_inference_mode_selection_by_attribute_and_config() -> None:
    np.random.seed(3)
    x = np.random.randn(2, 3, 8, 8).astype(np.float32)
    det = _tiny(inference="deterministic")
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        a, b = det(x).array, det(x).array
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, det.logits(x).array)
        with chainer.using_config("swapout_inference", "stochastic"):
            s1, s2 = det(x).array, det(x).array
        assert not np.allclose(s1, s2)
        sto = _tiny()
        with chainer.using_config("swapout_inference", "deterministic"):
            np.testing.assert_array_equal(sto(x).array, sto(x).array)
    with pytest.raises(ValueError):
        _tiny(inference="bogus")


def test_training_mode_samples_masks() -> None:
    np.random.seed(4)
    net = _tiny()
    x = np.random.randn(2, 3, 8, 8).astype(np.float32)
    with chainer.using_config("train", True), chainer.no_backprop_mode():
        outs = [net(x).array for _ in range(3)]
    assert outs[0].shape == (2, 10)
    assert not np.allclose(outs[0], outs[1])
