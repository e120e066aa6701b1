"""PyramidNet (paper 21): widening schedule, unit order, shortcuts, exact parameter counts."""

from __future__ import annotations

import math
from fractions import Fraction

import chainer
import chainer.functions as F
import numpy as np
import pytest

import chainer_nets  # noqa: F401  (applies the compat layer)
from chainer_nets.models.pyramidnet import (
    PyramidBasic,
    PyramidBottleneck,
    PyramidNet,
    pyramid_shortcut,
    pyramid_widths,
)
from chainer_nets.registry import count_params, get_model, get_model_info

# name: (all parameters, conv/linear weights only, final width = the paper's "output feature
# dimension" column).
EXACT = {
    "pyramidnet110_a48": (1_772_706, 1_759_528, 64),
    "pyramidnet110_a84": (3_904_446, 3_885_328, 100),
    "pyramidnet110_a270": (28_485_477, 28_435_669, 286),
    "pyramidnet164_a270_bottleneck": (27_216_021, 27_050_167, 1144),
    "pyramidnet272_a200_bottleneck": (26_210_842, 25_999_968, 864),
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_count_and_output_width(name: str) -> None:
    info = get_model_info(name)
    model = info.build()
    n_all, n_weights, final = EXACT[name]
    assert count_params(model) == n_all
    assert count_params(model, "weights") == n_weights
    assert model.channels[-1] == final
    assert info.params_counting == "weights"
    matches = round(n_weights / 1e6, 1) == info.paper_params_m
    # a recorded mismatch exactly where the rounded count differs from the printed one
    assert matches == (info.params_mismatch == ""), (name, n_weights, info.paper_params)


@pytest.mark.parametrize(
    "depth, alpha, bottleneck",
    [(110, 48, False), (110, 84, False), (110, 270, False), (164, 270, True), (272, 200, True)],
)
def test_channel_schedule_is_the_formula(depth: int, alpha: int, bottleneck: bool) -> None:
    """Unit k has D_k = round(16 + k alpha / N) channels (x4 after a bottleneck), exactly."""
    n = (depth - 2) // (9 if bottleneck else 6)
    total = 3 * n
    exact = [16 + Fraction(k * alpha, total) for k in range(1, total + 1)]
    # no width is a tie, so rounding half up (Torch) and half to even (PyTorch) agree
    assert all(w.denominator == 1 or w - math.floor(w) != Fraction(1, 2) for w in exact)
    formula = [math.floor(w + Fraction(1, 2)) for w in exact]
    assert pyramid_widths(alpha, total) == formula
    assert formula[-1] == 16 + alpha
    net = PyramidNet(depth, alpha, bottleneck)
    expansion = 4 if bottleneck else 1
    assert net.channels == [expansion * d for d in formula]
    in_ch = 16
    for unit, d in zip(net.units, formula, strict=True):
        assert (unit.in_ch, unit.out_ch) == (in_ch, expansion * d)
        in_ch = unit.out_ch


def test_non_integer_rate_rounds_the_running_width() -> None:
    """alpha = 48 over N = 54 units adds 8/9 of a channel per unit: some units add none."""
    widths = pyramid_widths(48, 54)
    steps = np.diff([16] + widths)
    assert set(steps.tolist()) == {0, 1} and widths[-1] == 64
    assert widths[:10] == [17, 18, 19, 20, 20, 21, 22, 23, 24, 25]


def test_strides_and_no_projection() -> None:
    net = PyramidNet(20, 12)
    strides = [u.stride for u in net.units]
    assert strides == [1, 1, 1, 2, 1, 1, 2, 1, 1]
    assert net.units[3].conv1.stride == (2, 2) and net.units[3].conv2.stride == (1, 1)
    b = PyramidNet(11, 12, bottleneck=True)
    assert b.units[1].conv2.stride == (2, 2) and b.units[1].conv1.stride == (1, 1)
    names = [n for n, _ in get_model("pyramidnet110_a48").namedparams()]
    assert not any("shortcut" in n for n in names)
    # parameters: stem conv + BN, per unit 2 convs + 3 BNs, head BN + linear
    assert sum(1 for n in names if n.endswith("/W")) == 1 + 2 * 54 + 1


def test_shortcut_is_2x2_average_then_zero_channels() -> None:
    x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    y = pyramid_shortcut(x, 5, 2).array
    assert y.shape == (1, 5, 2, 2)
    np.testing.assert_allclose(y[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_allclose(y[0, 1], [[18.5, 20.5], [26.5, 28.5]])
    assert not y[0, 2:].any()
    np.testing.assert_array_equal(pyramid_shortcut(x, 3, 1).array[:, :2], x)


def _bn(link: chainer.links.BatchNormalization, h: chainer.Variable) -> chainer.Variable:
    return F.batch_normalization(h, link.gamma, link.beta, eps=link.eps)


def test_basic_unit_order_bn_conv_bn_relu_conv_bn() -> None:
    """F(x) = BN(conv2(ReLU(BN(conv1(BN(x)))))), output F(x) + shortcut with no ReLU anywhere
    else: recomputed with chainer.functions from the unit's own weights."""
    rs = np.random.RandomState(0)
    unit = PyramidBasic(3, 5, 2)
    for link in (unit.bn1, unit.bn2, unit.bn_last):
        link.gamma.array[...] = rs.uniform(0.5, 1.5, link.gamma.shape)
        link.beta.array[...] = rs.uniform(-0.5, 0.5, link.beta.shape)
    x = rs.randn(4, 3, 8, 8).astype(np.float32)
    with chainer.using_config("train", True):
        y = unit(x).array
        h = _bn(unit.bn1, x)  # no ReLU here: the BN output keeps its negative values
        h = F.convolution_2d(h, unit.conv1.W, stride=2, pad=1)
        h = F.relu(_bn(unit.bn2, h))
        h = _bn(unit.bn_last, F.convolution_2d(h, unit.conv2.W, pad=1))
        ref = (h + pyramid_shortcut(x, 5, 2)).array
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    assert (y < 0).any()  # no ReLU after the addition
    # the ablation switches really change the unit: a ReLU at the start, no closing BN
    pre = PyramidBasic(3, 5, 2, first_relu=True, last_bn=False)
    assert not hasattr(pre, "bn_last")
    pre.conv1.W.array[...] = unit.conv1.W.array
    pre.conv2.W.array[...] = unit.conv2.W.array
    pre.bn1.gamma.array[...] = unit.bn1.gamma.array
    pre.bn1.beta.array[...] = unit.bn1.beta.array
    pre.bn2.gamma.array[...] = unit.bn2.gamma.array
    pre.bn2.beta.array[...] = unit.bn2.beta.array
    with chainer.using_config("train", True):
        h = F.relu(_bn(pre.bn1, x))
        h = F.relu(_bn(pre.bn2, F.convolution_2d(h, pre.conv1.W, stride=2, pad=1)))
        ref2 = (F.convolution_2d(h, pre.conv2.W, pad=1) + pyramid_shortcut(x, 5, 2)).array
        np.testing.assert_allclose(pre(x).array, ref2, rtol=1e-4, atol=1e-5)


def test_bottleneck_unit_order_and_width() -> None:
    rs = np.random.RandomState(1)
    unit = PyramidBottleneck(8, 3, 1)
    assert unit.out_ch == 12
    x = rs.randn(2, 8, 6, 6).astype(np.float32)
    with chainer.using_config("train", True):
        y = unit(x).array
        h = _bn(unit.bn1, x)
        h = F.relu(_bn(unit.bn2, F.convolution_2d(h, unit.conv1.W)))
        h = F.relu(_bn(unit.bn3, F.convolution_2d(h, unit.conv2.W, pad=1)))
        h = _bn(unit.bn_last, F.convolution_2d(h, unit.conv3.W))
        ref = (h + pyramid_shortcut(x, 12, 1)).array
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bottleneck", [False, True], ids=["basic", "bottleneck"])
def test_forward_backward_and_modes(bottleneck: bool) -> None:
    net = PyramidNet(11 if bottleneck else 20, 12, bottleneck)
    x = np.random.RandomState(2).randn(4, 3, 32, 32).astype(np.float32)
    t = np.array([0, 1, 2, 3], dtype=np.int32)
    with chainer.using_config("train", True):
        y = net(x)
        loss = F.softmax_cross_entropy(y, t)
    net.cleargrads()
    loss.backward()
    assert y.shape == (4, 10)
    assert all(p.grad is not None and np.isfinite(p.grad).all() for p in net.params())
    assert np.abs(net.conv1.W.grad).sum() > 0
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        a, b = net(x).array, net(x).array
    np.testing.assert_array_equal(a, b)


def test_bad_depth_is_rejected() -> None:
    with pytest.raises(ValueError, match="6n\\+2"):
        PyramidNet(111, 48)
    with pytest.raises(ValueError, match="9n\\+2"):
        PyramidNet(110 + 6, 48, bottleneck=True)


def test_registry_metadata() -> None:
    info = get_model_info("pyramidnet110_a270")
    assert (info.paper_no, info.arxiv, info.recipe) == (21, "1610.02915", "pyramidnet")
    assert info.paper_accuracy == 96.27 and info.paper_params == "28.3"
    assert get_model_info("pyramidnet272_a200_bottleneck").paper_accuracy == 96.69


def test_widths_override_gives_step_widening() -> None:
    """The same units with ResNet's 16/32/64 step schedule (the notebook's comparison)."""
    net = PyramidNet(20, 48, widths=[16] * 3 + [32] * 3 + [64] * 3)
    assert net.channels == [16] * 3 + [32] * 3 + [64] * 3
    assert PyramidNet(20, 48).channels[-1] == 64
    with pytest.raises(ValueError, match="widths"):
        PyramidNet(20, 48, widths=[16, 32, 64])
