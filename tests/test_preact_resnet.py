"""Paper 11 (pre-activation ResNet): exact counts, depth, shapes, the fb.resnet.torch first units."""

from __future__ import annotations

import chainer
import chainer.functions as F
import numpy as np
import pytest

from chainer_nets import get_model
from chainer_nets.blocks import zero_pad_shortcut
from chainer_nets.models.preact_resnet import PreActBasic, PreActResNetCifar
from chainer_nets.registry import count_params

# Exact counts (all parameters; "weights" = conv/linear weights only).
EXACT = {
    "preresnet110": 1_727_962,
    "preresnet164": 1_703_258,
    "preresnet1001": 10_327_706,
}
EXACT_WEIGHTS = {"preresnet164": 1_679_024, "preresnet1001": 10_178_480}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_count(name: str) -> None:
    model = get_model(name)
    assert count_params(model) == EXACT[name]
    if name in EXACT_WEIGHTS:
        assert count_params(model, "weights") == EXACT_WEIGHTS[name]


def test_depth_formula() -> None:
    """9n+2 weighted layers (bottleneck pre-act)."""

    def n_weighted(model: chainer.Link) -> int:
        return sum(1 for name, _ in model.namedparams() if name.endswith("/W")) - sum(
            1 for name, _ in model.namedparams() if "shortcut" in name and name.endswith("/W")
        )

    assert n_weighted(get_model("preresnet164")) == 164


def test_output_shape_and_train_test_modes() -> None:
    model = PreActResNetCifar(depth=11, bottleneck=True)
    x = np.random.RandomState(0).randn(4, 3, 32, 32).astype(np.float32)
    with chainer.using_config("train", True):
        y_train = model(x).array
    assert y_train.shape == (4, 10) and y_train.dtype == np.float32
    with chainer.using_config("train", False):
        y1, y2 = model(x).array, model(x).array
    np.testing.assert_array_equal(y1, y2)  # test mode is deterministic
    assert not np.allclose(y_train, y1, atol=1e-3)


def test_projection_only_in_first_unit_of_each_stage() -> None:
    pre = [n for n, _ in get_model("preresnet164").namedparams() if "shortcut" in n]
    assert len(pre) == 3


def test_first_unit_of_every_stage_is_both_preact() -> None:
    """fb.resnet.torch's CIFAR path: the first unit of each stage (the very first included)
    shares BN-ReLU with its option-A shortcut; the other units' shortcuts read raw x."""
    model = PreActResNetCifar(depth=20, bottleneck=False)  # n = 3
    flags = [b.both_preact for b in model.blocks]
    assert flags == [True, False, False] * 3
    unit = model.blocks[3]  # stage 2, first unit: 16 -> 32, stride 2
    x = np.random.RandomState(0).randn(2, 16, 8, 8).astype(np.float32)
    with chainer.using_config("train", False):
        y = unit(x).array
        a = F.relu(unit.bn1(x))
        h = unit.conv2(F.relu(unit.bn2(unit.conv1(a))))
        expected = (h + zero_pad_shortcut(a, 32, 2)).array
        raw = (h + zero_pad_shortcut(chainer.Variable(x), 32, 2)).array
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    assert not np.allclose(y, raw, atol=1e-3)


def test_both_preact_changes_no_parameter_count() -> None:
    assert count_params(PreActBasic(16, 32, 2, True)) == count_params(PreActBasic(16, 32, 2))
