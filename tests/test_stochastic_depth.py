"""Stochastic depth (paper 13): survival schedule, gate statistics, identity drop, test scaling."""

from __future__ import annotations

import math

import chainer
import numpy as np
import pytest

import chainer_nets  # noqa: F401  (applies the compat layer)
from chainer_nets.blocks import linear_decay_survival, stochastic_depth
from chainer_nets.models.stochastic_depth import (
    StochasticDepthBlock,
    StochasticDepthResNet,
    avg_pool_pad_shortcut,
)
from chainer_nets.registry import count_params, get_model, get_model_info


@pytest.mark.parametrize(
    "name, params, paper",
    [("sd_resnet110", 1_727_962, "1.7"), ("sd_resnet1202", 19_421_274, "19.4")],
)
def test_param_count(name: str, params: int, paper: str) -> None:
    info = get_model_info(name)
    n = count_params(info.build(), info.params_counting)
    assert n == params
    assert info.paper_params == paper
    assert round(n / 1e6, info.params_decimals) == info.paper_params_m


def test_linear_decay_schedule() -> None:
    """p_l = 1 - (l/L)(1 - p_L): the last of ResNet-110's 54 blocks survives with 0.5."""
    net = get_model("sd_resnet110")
    p = net.survival
    assert len(p) == 54
    assert p[-1] == pytest.approx(0.5)
    assert p[0] == pytest.approx(1 - 0.5 / 54)
    assert np.allclose(p, [1 - (i / 54) * 0.5 for i in range(1, 55)])
    assert linear_decay_survival(3, 6, 0.2) == pytest.approx(0.6)


def _small_net() -> StochasticDepthResNet:
    return StochasticDepthResNet(n=2, widths=(2, 4, 8))


def test_empirical_drop_rate_matches_survival() -> None:
    """Each block's branch runs in a fraction p_l of training passes (binomial tolerance)."""
    np.random.seed(0)
    net = _small_net()
    counts = [0] * len(net.blocks)
    for k, block in enumerate(net.blocks):

        def stub(x, k=k, block=block):
            counts[k] += 1
            return avg_pool_pad_shortcut(x, block.out_ch, block.stride) * 0

        block.residual = stub
    trials = 3000
    x = np.random.rand(1, 3, 4, 4).astype(np.float32)
    with chainer.using_config("train", True), chainer.no_backprop_mode():
        for _ in range(trials):
            net(x)
    for k, p in enumerate(net.survival):
        std = math.sqrt(trials * p * (1 - p))
        assert abs(counts[k] - trials * p) <= 4 * std + 1, (k, counts[k], trials * p)
    # The schedule spans survival 1 - 0.5/6 .. 0.5, so the check is not vacuous.
    assert counts[-1] < 0.6 * trials < 0.85 * trials < counts[0]


def test_gate_function_counts() -> None:
    np.random.seed(1)
    calls = []
    kept = 0
    with chainer.using_config("train", True):
        for _ in range(4000):
            kept += stochastic_depth(lambda: calls.append(1) or 1.0, 0.3) is not None
    assert kept == len(calls)
    assert abs(kept - 1200) <= 4 * math.sqrt(4000 * 0.3 * 0.7)


def test_dropped_block_is_identity_and_skips_branch() -> None:
    block = StochasticDepthBlock(4, 4, 1, survival=0.0)  # always dropped in training

    def boom(x):
        raise AssertionError("the residual branch of a dropped block must not be computed")

    block.residual = boom
    x = np.random.rand(2, 4, 8, 8).astype(np.float32)  # post-ReLU input: non-negative
    with chainer.using_config("train", True):
        y = block(x)
    np.testing.assert_array_equal(y.array, x)


def test_downsampling_shortcut_is_avgpool_and_zero_pad() -> None:
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    y = avg_pool_pad_shortcut(x, 3, 2).array
    assert y.shape == (1, 3, 2, 2)
    np.testing.assert_allclose(y[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    assert not y[0, 1:].any()


def test_test_mode_scales_branch_by_survival_and_is_deterministic() -> None:
    np.random.seed(2)
    block = StochasticDepthBlock(4, 4, 1, survival=0.3)
    x = np.random.rand(2, 4, 8, 8).astype(np.float32)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        y1 = block(x).array
        y2 = block(x).array
        f = block.residual(x).array
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(y1, np.maximum(x + 0.3 * f, 0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(y1, np.maximum(x + f, 0))


def test_whole_net_test_mode_deterministic_train_mode_random() -> None:
    np.random.seed(3)
    net = _small_net()
    x = np.random.rand(2, 3, 8, 8).astype(np.float32)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        a, b = net(x).array, net(x).array
    np.testing.assert_array_equal(a, b)
    with chainer.using_config("train", True), chainer.no_backprop_mode():
        outs = {net(x).array.tobytes() for _ in range(12)}
    assert len(outs) > 1


def test_dropped_block_gets_no_gradient() -> None:
    np.random.seed(4)
    net = _small_net()
    for block in net.blocks:
        block.survival = 0.0
    x = np.random.rand(2, 3, 8, 8).astype(np.float32)
    with chainer.using_config("train", True):
        loss = chainer.functions.sum(net(x))
    net.cleargrads()
    loss.backward()
    assert all(p.grad is None for p in net.blocks.params())
    assert net.conv1.W.grad is not None


def test_official_code_initialisation() -> None:
    """yueatsprograms/Stochastic_Depth: nninit.kaiming (fan-in, ReLU gain), BN scale U(0, 1)."""
    from chainer_nets.blocks import TORCH_FAN_IN
    from chainer_nets.models import stochastic_depth

    assert stochastic_depth.INIT == TORCH_FAN_IN
    np.random.seed(0)
    model = StochasticDepthResNet(n=2, widths=(16, 64, 256))
    w = model.blocks[4].conv1.W.array  # 64 -> 256, 3x3
    assert abs(w.std() - np.sqrt(2 / (64 * 9))) < 0.03 * np.sqrt(2 / (64 * 9))
    gammas = np.concatenate([b.bn1.gamma.array for b in model.blocks])
    assert 0 <= gammas.min() and gammas.max() < 1


def test_registry_says_how_the_target_was_selected() -> None:
    description = get_model_info("sd_resnet110").description
    assert "best validation" in description and "last iteration" in description
