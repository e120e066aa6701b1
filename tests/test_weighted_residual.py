"""Paper 17, weighted residuals: lambda's init and formula, its own lr and projection, WResNet-d."""

from __future__ import annotations

import chainer
import chainer.functions as F
import numpy as np
import pytest

from chainer_nets import get_model, get_model_info
from chainer_nets.blocks import zero_pad_shortcut
from chainer_nets.models.weighted_residual import (
    LAMBDA_LR,
    WeightedResidualBlock,
    WeightedResNet,
    linear_survival,
)
from chainer_nets.registry import count_params


def _x(shape: tuple, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)


def test_exact_parameter_count_and_2016_figure() -> None:
    info = get_model_info("wresnet_d1192")
    model = get_model("wresnet_d1192")
    assert count_params(model, "weights") == 19_138_096
    assert count_params(model) == 19_227_436  # incl. BN, FC bias and the 594 lambdas
    assert info.params_counting == "weights" and info.paper_params == "19.1"
    assert info.paper_accuracy == 95.3
    blocks = list(model.blocks)
    assert len(blocks) == 3 * 198  # depth 6n + 4 = 1192
    assert blocks[0].survival == pytest.approx(1 - 0.5 / 594) and blocks[-1].survival == 0.5


def test_lambda_initialised_to_zero_so_every_block_is_its_shortcut() -> None:
    model = WeightedResNet(n=2, widths=(4, 8, 8))
    assert all(float(lam.array[0]) == 0.0 for lam in model.residual_weights())
    x = _x((2, 4, 8, 8))
    block = model.blocks[2]  # width 4 -> 8, stride 2
    with chainer.using_config("train", True):
        np.testing.assert_array_equal(
            block(x).array, zero_pad_shortcut(chainer.Variable(x), 8, 2).array
        )


def test_weighted_residual_formula() -> None:
    """y = x + lambda F(x), F = ReLU(BN(W2 * ReLU(BN(W1 * x)))), no ReLU after the addition."""
    block = WeightedResidualBlock(3, 3)
    block.lam.array[...] = -0.7
    x = _x((2, 3, 6, 6), 1)
    with chainer.using_config("train", True):
        h = F.relu(block.bn1(block.conv1(x)))
        f = F.relu(block.bn2(block.conv2(h))).array
        y = block(x).array
    np.testing.assert_allclose(y, x - 0.7 * f, rtol=1e-5, atol=1e-5)
    assert (f >= 0).all() and (y < 0).any()  # the branch ends in ReLU; the sum may be negative


def test_stochastic_depth_follows_train_config_and_xp_random() -> None:
    block = WeightedResidualBlock(3, 3, survival=0.5)
    block.lam.array[...] = 0.5
    x = _x((2, 3, 6, 6), 2)
    with chainer.using_config("train", False):
        f = block.residual(x).array
        np.testing.assert_allclose(block(x).array, x + 0.5 * 0.5 * f, rtol=1e-5, atol=1e-5)
    with chainer.using_config("train", True):
        np.random.seed(0)
        outs = [block(x).array for _ in range(40)]
        np.random.seed(0)
        again = [block(x).array for _ in range(40)]
    dropped = sum(np.array_equal(o, x) for o in outs)
    assert 5 < dropped < 35
    assert all(np.array_equal(a, b) for a, b in zip(outs, again, strict=True))
    assert linear_survival(4, 0.5) == [0.875, 0.75, 0.625, 0.5]


def test_lambda_rate_follows_the_schedule_in_an_optimizer_step() -> None:
    """After configure_optimizer, lambda's rate is LAMBDA_LR / base times the optimizer's:
    when the schedule halves the network's rate (0.1 -> 0.05) lambda's halves too, and on the
    first momentum-SGD step lambda moves by -(LAMBDA_LR / 2) * grad, a conv weight by
    -0.05 * grad."""
    model = WeightedResNet(n=1, widths=(4, 4, 4))
    for lam in model.residual_weights():
        lam.array[...] = 0.3
    opt = chainer.optimizers.MomentumSGD(lr=0.1, momentum=0.9)
    opt.setup(model)
    model.configure_optimizer(opt, None)
    opt.lr = 0.05  # what the learning-rate schedule does every iteration
    x, y = _x((4, 3, 8, 8), 3), np.array([0, 1, 2, 3], np.int32)
    loss = F.softmax_cross_entropy(model(x), y)
    model.cleargrads()
    loss.backward()
    lam = model.blocks[1].lam
    w = model.blocks[1].conv1.W
    lam0, lam_g, w0, w_g = lam.array.copy(), lam.grad.copy(), w.array.copy(), w.grad.copy()
    assert abs(float(lam_g[0])) > 0
    opt.update()
    np.testing.assert_allclose(lam.array, lam0 - LAMBDA_LR / 2 * lam_g, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(w.array, w0 - 0.05 * w_g, rtol=1e-5, atol=1e-8)
    assert lam.update_rule.hyperparam.lr == pytest.approx(LAMBDA_LR / 2)
    assert w.update_rule.hyperparam.lr == 0.05


def test_lambda_rate_is_divided_at_the_recipes_milestones() -> None:
    """With the recipe (base lr 0.1), lambda's rate is 1e-3, 1e-4, 1e-5 as the network's
    goes 0.1, 0.01, 0.001 (it was a fixed 1e-3 before)."""
    from chainer_nets.recipes import get_recipe

    recipe = get_recipe("weighted_residual")
    model = WeightedResNet(n=1, widths=(4, 4, 4))
    opt = chainer.optimizers.MomentumSGD(lr=recipe.lr)
    opt.setup(model)
    model.configure_optimizer(opt, recipe)
    lam = model.blocks[0].lam
    rates = []
    for lr in (0.1, 0.01, 0.001):
        opt.lr = lr
        lam.grad = np.zeros((1,), np.float32)
        lam.update()
        rates.append(lam.update_rule.hyperparam.lr)
    assert rates == pytest.approx([1e-3, 1e-4, 1e-5])


def test_the_shared_stochastic_depth_gate_is_used(monkeypatch) -> None:
    """The block's gate is blocks.stochastic_depth (one host draw, no device read)."""
    import chainer_nets.models.weighted_residual as wr

    calls = []

    def gate(branch, survival):
        calls.append(survival)
        return None

    monkeypatch.setattr(wr, "stochastic_depth", gate)
    block = WeightedResidualBlock(3, 3, survival=0.5)
    x = _x((2, 3, 6, 6), 2)
    with chainer.using_config("train", True):
        np.testing.assert_array_equal(block(x).array, x)
    assert calls == [0.5]


def test_lambda_is_projected_into_minus_one_one() -> None:
    model = WeightedResNet(n=1, widths=(4, 4, 4))
    opt = chainer.optimizers.MomentumSGD(lr=0.1)
    opt.setup(model)
    model.configure_optimizer(opt, None)
    model.cleargrads()
    lams = model.residual_weights()
    for lam, g in zip(lams, (-1e4, 1e4, 0.0), strict=True):
        lam.array[...] = 0.9
        lam.grad = np.full((1,), g, np.float32)
    for lam in lams:
        lam.update()
    assert [float(lam.array[0]) for lam in lams] == [1.0, -1.0, pytest.approx(0.9)]
