"""Recipes as data: the papers' numbers, and the learning-rate schedule built from them."""

from __future__ import annotations

import pytest

from chainer_nets.recipes import get_recipe, list_recipes
from chainer_nets.registry import list_models
from chainer_nets.schedule import lr_at


def test_every_model_has_a_recipe_with_departures() -> None:
    names = set(list_recipes())
    for info in list_models():
        assert info.recipe in names, info.name
        assert get_recipe(info.recipe).departures, f"{info.recipe} lists no departures"


def test_resnet_recipe_is_the_papers() -> None:
    r = get_recipe("resnet")
    assert (r.optimizer, r.momentum, r.weight_decay, r.batch_size, r.lr) == (
        "momentum_sgd",
        0.9,
        1e-4,
        128,
        0.1,
    )
    assert r.in_iterations(390.625) == (64000, (32000, 48000)) and r.warmup_lr is None
    for name in ("resnet_warmup", "preresnet"):
        w = get_recipe(name)
        assert (w.warmup_lr, w.warmup_iterations) == (0.01, 400)
        assert w.in_iterations(390.625) == (64000, (32000, 48000))


def test_wrn_recipe_is_the_papers() -> None:
    r = get_recipe("wrn")
    assert (r.optimizer, r.weight_decay, r.gamma, r.augment.pad_mode) == (
        "nesterov",
        5e-4,
        0.2,
        "reflect",
    )
    stop, milestones = r.in_iterations(50000 / 128)
    assert stop == 78125 and milestones == (23438, 46875, 62500)


@pytest.mark.parametrize(
    "iteration, expected",
    [
        (0, 0.01),
        (399, 0.01),
        (400, 0.1),
        (31999, 0.1),
        (32000, 0.01),
        (48000, 0.001),
        (63999, 0.001),
    ],
)
def test_lr_schedule_with_warmup(iteration: int, expected: float) -> None:
    r = get_recipe("resnet_warmup")
    assert lr_at(r, iteration, (32000, 48000), 0.1) == pytest.approx(expected)


def test_models_use_the_right_recipe() -> None:
    by_name = {i.name: i.recipe for i in list_models()}
    assert by_name["resnet20"] == "resnet" and by_name["resnet110"] == "resnet_warmup"
    assert by_name["resnet1202"] == "resnet_warmup" and by_name["preresnet164"] == "preresnet"
    assert by_name["wrn28_10"] == "wrn"


def test_compressed_schedule_compresses_the_warmup() -> None:
    r = get_recipe("preresnet")
    assert lr_at(r, 10, (40, 60), 0.1, warmup_iterations=5) == pytest.approx(0.1)
    assert lr_at(r, 4, (40, 60), 0.1, warmup_iterations=5) == pytest.approx(0.01)


def test_swapout_recipe_is_the_papers() -> None:
    """Batch 128, wd 1e-4, 256 epochs, lr 0.1 divided by 10 after epochs 192 and 224."""
    r = get_recipe("swapout")
    assert (r.batch_size, r.weight_decay, r.lr, r.length) == (128, 1e-4, 0.1, 256)
    assert tuple(r.milestones) == (192, 224)


def test_highway_recipe_pads_like_the_authors_data() -> None:
    """The authors' CIFAR data were padded by 8 pixels per side before 32x32 crops."""
    r = get_recipe("highway")
    assert (r.augment.pad, r.augment.flip, r.batch_size) == (8, True, 100)
