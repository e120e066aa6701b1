"""Paper 8 (ResNet): exact parameter counts, depth, shapes, train/test behaviour, learning."""

from __future__ import annotations

import chainer
import chainer.functions as F
import numpy as np
import pytest

from chainer_nets import get_model, get_model_info
from chainer_nets.models.resnet import ResNetCifar
from chainer_nets.registry import count_params

# Exact counts of our implementations (all parameters).
EXACT = {
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "resnet1202": 19_421_274,
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_count(name: str) -> None:
    model = get_model(name)
    assert count_params(model) == EXACT[name]


def test_registry_metadata() -> None:
    assert get_model_info("resnet110").paper_accuracy == 93.57


def test_depth_formula() -> None:
    """6n+2 weighted layers."""

    def n_weighted(model: chainer.Link) -> int:
        return sum(1 for name, _ in model.namedparams() if name.endswith("/W")) - sum(
            1 for name, _ in model.namedparams() if "shortcut" in name and name.endswith("/W")
        )

    assert n_weighted(get_model("resnet56")) == 56


def test_output_shape_and_train_test_modes() -> None:
    model = ResNetCifar(n=1)
    x = np.random.RandomState(0).randn(4, 3, 32, 32).astype(np.float32)
    with chainer.using_config("train", True):
        y_train = model(x).array
    assert y_train.shape == (4, 10) and y_train.dtype == np.float32
    with chainer.using_config("train", False):
        y1, y2 = model(x).array, model(x).array
    np.testing.assert_array_equal(y1, y2)  # test mode is deterministic
    # train mode normalises with batch statistics, test mode with running averages
    assert not np.allclose(y_train, y1, atol=1e-3)


def test_option_a_shortcut_has_no_parameters() -> None:
    """Original ResNet: zero-pad shortcuts; only conv, BN and FC parameters exist."""
    names = [n for n, _ in get_model("resnet20").namedparams()]
    assert not any("shortcut" in n for n in names)


def test_tiny_batch_is_overfit() -> None:
    """Training on one fixed batch drives the loss far below where it started."""
    np.random.seed(0)
    model = ResNetCifar(n=1)
    rs = np.random.RandomState(0)
    x = rs.randn(16, 3, 32, 32).astype(np.float32)
    t = rs.randint(0, 10, 16).astype(np.int32)
    opt = chainer.optimizers.MomentumSGD(lr=0.05, momentum=0.9)
    opt.setup(model)
    losses = []
    for _ in range(40):
        loss = F.softmax_cross_entropy(model(x), t)
        model.cleargrads()
        loss.backward()
        opt.update()
        losses.append(float(loss.array))
    assert losses[-1] < 0.2 * losses[0], losses


def test_fb_resnet_torch_initialisation() -> None:
    """fb.resnet.torch: He-normal over the output fan, BN scale 1."""
    np.random.seed(0)
    model = ResNetCifar(n=1, widths=(64, 64, 64))
    w = model.blocks[1].conv2.W.array  # 64 -> 64, 3x3: fan-in = fan-out
    assert model.blocks[0].bn1.gamma.array.tolist() == [1.0] * 64
    stem = model.conv1.W.array  # 3 -> 64: fan-out 576, fan-in 27
    assert abs(stem.std() - np.sqrt(2 / 576)) < 0.15 * np.sqrt(2 / 576)
    assert abs(w.std() - np.sqrt(2 / 576)) < 0.05 * np.sqrt(2 / 576)
