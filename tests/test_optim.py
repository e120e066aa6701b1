"""The trainer's optimizers: RMSProp as Inception-v3 trained (epsilon inside the square root),
and SGD / Nesterov exactly as Chainer's own."""

from __future__ import annotations

import dataclasses
import types

import chainer
import chainer.links as L
import numpy as np
import pytest

import chainer_nets.recipes as recipes
from chainer_nets.optim import build_optimizer
from chainer_nets.recipes import get_recipe

CFG = types.SimpleNamespace(dtype="float32")
CPU = chainer.get_device("@numpy")


def _net() -> chainer.Chain:
    net = chainer.Sequential(L.Linear(3, 2))
    net[0].W.array[...] = np.array([[0.5, -1.0, 2.0], [0.25, 0.0, -0.5]], np.float32)
    net[0].b.array[...] = 0.0
    return net


def _step(opt: chainer.Optimizer, params: list[chainer.Parameter], grads: list) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = np.asarray(g, np.float32).copy()
    opt.update()


def test_inception_v3_recipe_is_rmsprop_decay_09_eps_1() -> None:
    r = get_recipe("inception_v3")
    assert (r.optimizer, r.rmsprop_decay, r.rmsprop_epsilon, r.lr) == ("rmsprop", 0.9, 1.0, 0.045)
    assert r.summary().startswith("RMSProp decay 0.9 eps 1, lr 0.045")
    assert not any("has no RMSProp" in d for d in r.departures)
    assert any("momentum" in d for d in r.departures)  # the TensorFlow script's momentum 0.9


def test_rmsprop_step_is_tensorflows_with_eps_inside_the_root() -> None:
    """Two steps by hand: m = 0.9 m + 0.1 g^2, w -= lr g / sqrt(m + 1), no weight decay."""
    r = dataclasses.replace(get_recipe("inception_v3"), weight_decay=0.0)
    net = _net()
    opt = build_optimizer(net, r, CFG, CPU, 0.045)
    assert isinstance(opt, chainer.optimizers.RMSprop)
    w = net[0].W.array.astype(np.float64)
    g1 = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
    g2 = np.array([[-0.5, 1.0, 4.0], [1.0, 2.0, 0.0]])
    m = np.zeros_like(w)
    outside = w.copy()
    m_out = np.zeros_like(w)
    for g in (g1, g2):
        _step(opt, [net[0].W, net[0].b], [g, np.zeros(2)])
        m = 0.9 * m + 0.1 * g * g
        w = w - 0.045 * g / np.sqrt(m + 1.0)
        m_out = 0.9 * m_out + 0.1 * g * g
        outside = outside - 0.045 * g / (np.sqrt(m_out) + 1.0)
    np.testing.assert_allclose(net[0].W.array, w, rtol=1e-6)
    # Chainer's default (eps added outside the root) would land elsewhere
    assert np.abs(outside - w).max() > 1e-3


def test_rmsprop_keeps_weight_decay_and_lr_schedule_hooks() -> None:
    """Weight decay adds wd * w to the gradient; the lr is the optimizer's ``lr`` (scheduled)."""
    r = get_recipe("inception_v3")
    net = _net()
    opt = build_optimizer(net, r, CFG, CPU, 0.045)
    opt.lr = 0.01
    w0 = net[0].W.array.astype(np.float64)
    _step(opt, [net[0].W, net[0].b], [np.zeros((2, 3)), np.zeros(2)])
    g = r.weight_decay * w0
    np.testing.assert_allclose(net[0].W.array, w0 - 0.01 * g / np.sqrt(0.1 * g * g + 1), rtol=1e-6)


@pytest.mark.parametrize(
    ("recipe", "reference"),
    [
        ("resnet", lambda lr, mom: chainer.optimizers.MomentumSGD(lr=lr, momentum=mom)),
        ("wrn", lambda lr, mom: chainer.optimizers.NesterovAG(lr=lr, momentum=mom)),
    ],
)
def test_sgd_and_nesterov_are_chainers_bit_for_bit(recipe: str, reference) -> None:
    """Three steps of build_optimizer's SGD / Nesterov equal Chainer's optimizer plus WeightDecay."""
    r = get_recipe(recipe)
    a, b = _net(), _net()
    opt_a = build_optimizer(a, r, CFG, CPU, 0.1)
    opt_b = reference(0.1, r.momentum)
    opt_b.setup(b)
    opt_b.add_hook(chainer.optimizer_hooks.WeightDecay(r.weight_decay))
    rng = np.random.RandomState(0)
    for _ in range(3):
        grads = [rng.randn(2, 3), rng.randn(2)]
        _step(opt_a, [a[0].W, a[0].b], grads)
        _step(opt_b, [b[0].W, b[0].b], grads)
    np.testing.assert_array_equal(a[0].W.array, b[0].W.array)
    np.testing.assert_array_equal(a[0].b.array, b[0].b.array)


def test_unknown_optimizer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = dataclasses.replace(get_recipe("resnet"), optimizer="adam")
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        build_optimizer(_net(), bad, CFG, CPU, 0.1)
    raw = {"paper": "p", "optimizer": "adam", "lr": 0.1, "weight_decay": 0.0}
    raw.update(batch_size=1, unit="epoch", length=1)
    monkeypatch.setattr(recipes, "_load_raw", lambda name: dict(raw))
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        get_recipe("x")
    raw["optimizer"] = "rmsprop"
    with pytest.raises(ValueError, match="rmsprop_decay and rmsprop_epsilon"):
        get_recipe("x")  # RMSProp needs both of its numbers
