"""Paper 15 (WRN): exact counts, depth, shapes, dropout, the authors' initialisation, figures."""

from __future__ import annotations

import chainer
import numpy as np
import pytest

from chainer_nets import get_model, get_model_info
from chainer_nets.blocks import TORCH_FAN_IN
from chainer_nets.models import wide_resnet
from chainer_nets.models.wide_resnet import WideResNet
from chainer_nets.registry import count_params

EXACT = {
    "wrn16_8": 10_961_370,
    "wrn40_4": 8_949_210,
    "wrn28_10": 36_479_194,
    "wrn28_10_dropout": 36_479_194,
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_count(name: str) -> None:
    assert count_params(get_model(name)) == EXACT[name]


def test_registry_metadata() -> None:
    info = get_model_info("wrn28_10")
    assert info.arxiv == "1605.07146" and info.paper_accuracy == 96.0 and info.recipe == "wrn"


def test_figures_are_the_authors_readme() -> None:
    """README: WRN-28-10 4.00%, -dropout 3.89%; no CIFAR-10 figure for WRN-16-8 / WRN-40-4."""
    assert get_model_info("wrn28_10_dropout").paper_accuracy == 96.11
    assert get_model_info("wrn16_8").paper_accuracy is None
    assert get_model_info("wrn40_4").paper_accuracy is None


def test_depth_formula() -> None:
    """6n+4 convolutions: the stem, 6n in the blocks and the three 1x1 projections."""
    wrn = get_model("wrn28_10")
    assert sum(1 for name, _ in wrn.namedparams() if name.endswith("/W")) - 1 == 28


def test_output_shape_and_train_test_modes() -> None:
    model = WideResNet(10, 2, 0.3)
    x = np.random.RandomState(0).randn(4, 3, 32, 32).astype(np.float32)
    with chainer.using_config("train", True):
        y_train = model(x).array
    assert y_train.shape == (4, 10) and y_train.dtype == np.float32
    with chainer.using_config("train", False):
        y1, y2 = model(x).array, model(x).array
    np.testing.assert_array_equal(y1, y2)  # test mode is deterministic
    assert not np.allclose(y_train, y1, atol=1e-3)


def test_dropout_only_in_training() -> None:
    model = WideResNet(10, 1, dropout=0.3)
    x = np.random.RandomState(1).randn(2, 3, 32, 32).astype(np.float32)
    with chainer.using_config("train", True):
        a, b = model(x).array, model(x).array
    assert not np.allclose(a, b)


def test_projection_only_in_first_unit_of_each_stage() -> None:
    wrn = [n for n, _ in get_model("wrn28_10").namedparams() if "shortcut" in n]
    assert len(wrn) == 3


def test_authors_initialisation() -> None:
    """The WRN code after commit ea02518: He-normal over the input fan; BN scale U(0, 1)."""
    assert wide_resnet.INIT == TORCH_FAN_IN
    np.random.seed(0)
    model = WideResNet(10, 4)  # stage 2 first conv: 64 -> 128, 3x3
    w = model.blocks[1].conv1.W.array
    fan_in, fan_out = 64 * 9, 128 * 9
    assert abs(w.std() - np.sqrt(2 / fan_in)) < 0.03 * np.sqrt(2 / fan_in)
    assert abs(w.std() - np.sqrt(2 / fan_out)) > 0.2 * np.sqrt(2 / fan_out)
    gammas = np.concatenate([b.bn1.gamma.array for b in model.blocks])
    assert 0 <= gammas.min() and gammas.max() < 1 and 0.4 < gammas.mean() < 0.6
