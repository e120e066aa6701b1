"""Papers 8, 11, 15: exact parameter counts, shapes, train/test behaviour, learning."""

from __future__ import annotations

import chainer
import chainer.functions as F
import numpy as np
import pytest

from chainer_nets import get_model, get_model_info, list_models
from chainer_nets.models.preact_resnet import PreActResNetCifar
from chainer_nets.models.resnet import ResNetCifar
from chainer_nets.models.wide_resnet import WideResNet
from chainer_nets.registry import count_params

# Exact counts of our implementations (all parameters; "weights" = conv/linear weights only).
EXACT = {
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "resnet1202": 19_421_274,
    "preresnet110": 1_727_962,
    "preresnet164": 1_703_258,
    "preresnet1001": 10_327_706,
    "wrn16_8": 10_961_370,
    "wrn40_4": 8_949_210,
    "wrn28_10": 36_479_194,
    "wrn28_10_dropout": 36_479_194,
}
EXACT_WEIGHTS = {"preresnet164": 1_679_024, "preresnet1001": 10_178_480}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_count(name: str) -> None:
    model = get_model(name)
    assert count_params(model) == EXACT[name]
    if name in EXACT_WEIGHTS:
        assert count_params(model, "weights") == EXACT_WEIGHTS[name]


@pytest.mark.parametrize("info", list_models(), ids=lambda i: i.name)
def test_parameter_count_matches_paper(info) -> None:
    """Every registered model equals its paper's stated count at the paper's precision."""
    if info.paper_params is None:
        pytest.skip(f"{info.paper} states no parameter count")
    n = count_params(info.build(), info.params_counting)
    if info.params_mismatch:  # a documented difference: it must really be a difference
        assert round(n / 1e6, info.params_decimals) != pytest.approx(info.paper_params_m)
        return
    assert round(n / 1e6, info.params_decimals) == pytest.approx(info.paper_params_m), (
        f"{info.name}: {n} parameters ({info.params_counting}) vs paper {info.paper_params}M"
    )


def test_registry_metadata_and_unknown_name() -> None:
    info = get_model_info("wrn28_10")
    assert info.arxiv == "1605.07146" and info.paper_accuracy == 96.0 and info.recipe == "wrn"
    assert get_model_info("resnet110").paper_accuracy == 93.57
    with pytest.raises(KeyError, match="Did you mean"):
        get_model("resnet111")


def test_depth_formulas() -> None:
    """6n+2 weighted layers (ResNet), 9n+2 (bottleneck pre-act), 6n+4 convolutions (WRN:
    the stem, 6n in the blocks and the three 1x1 projections)."""

    def n_weighted(model: chainer.Link) -> int:
        return sum(1 for name, _ in model.namedparams() if name.endswith("/W")) - sum(
            1 for name, _ in model.namedparams() if "shortcut" in name and name.endswith("/W")
        )

    assert n_weighted(get_model("resnet56")) == 56
    assert n_weighted(get_model("preresnet164")) == 164
    wrn = get_model("wrn28_10")
    assert sum(1 for name, _ in wrn.namedparams() if name.endswith("/W")) - 1 == 28


@pytest.mark.parametrize(
    "model",
    [ResNetCifar(n=1), PreActResNetCifar(depth=11, bottleneck=True), WideResNet(10, 2, 0.3)],
    ids=["resnet", "preact_bottleneck", "wrn"],
)
def test_output_shape_and_train_test_modes(model: chainer.Chain) -> None:
    x = np.random.RandomState(0).randn(4, 3, 32, 32).astype(np.float32)
    with chainer.using_config("train", True):
        y_train = model(x).array
    assert y_train.shape == (4, 10) and y_train.dtype == np.float32
    with chainer.using_config("train", False):
        y1, y2 = model(x).array, model(x).array
    np.testing.assert_array_equal(y1, y2)  # test mode is deterministic
    # train mode normalises with batch statistics, test mode with running averages
    assert not np.allclose(y_train, y1, atol=1e-3)


def test_dropout_only_in_training() -> None:
    model = WideResNet(10, 1, dropout=0.3)
    x = np.random.RandomState(1).randn(2, 3, 32, 32).astype(np.float32)
    with chainer.using_config("train", True):
        a, b = model(x).array, model(x).array
    assert not np.allclose(a, b)


def test_option_a_shortcut_has_no_parameters() -> None:
    """Original ResNet: zero-pad shortcuts; only conv, BN and FC parameters exist."""
    names = [n for n, _ in get_model("resnet20").namedparams()]
    assert not any("shortcut" in n for n in names)
    # pre-act bottleneck and WRN: a 1x1 projection in the first unit of each stage only
    pre = [n for n, _ in get_model("preresnet164").namedparams() if "shortcut" in n]
    wrn = [n for n, _ in get_model("wrn28_10").namedparams() if "shortcut" in n]
    assert len(pre) == 3 and len(wrn) == 3


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
