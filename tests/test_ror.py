"""RoR (paper 18): the three shortcut levels, stochastic depth on the final level, parameters."""

from __future__ import annotations

import chainer
import numpy as np
import pytest

import chainer_nets  # noqa: F401  (applies the compat layer)
from chainer_nets.models.ror import RoRBlock, RoRWideResNet
from chainer_nets.models.wide_resnet import WideResNet
from chainer_nets.registry import count_params, get_model_info


def test_param_count() -> None:
    info = get_model_info("ror3_wrn58_4_sd")
    net = info.build()
    n = count_params(net, info.params_counting)
    assert n == 13_646_938
    assert round(n / 1e6, 1) == 13.6  # the 2016 table's figure; the paper's was not readable
    # RoR adds exactly the middle (16->64, 64->128, 128->256) and root (16->256) projections
    # with their BN to WRN-58-4.
    base = count_params(WideResNet(58, 4))
    assert n - base == (16 * 64 + 64 * 128 + 128 * 256 + 16 * 256) + 2 * (64 + 128 + 256 + 256)
    assert len(net.survival) == 27 and net.survival[-1] == pytest.approx(0.5)
    assert net.survival[0] == pytest.approx(1 - 0.5 / 27)


def _tiny() -> RoRWideResNet:
    return RoRWideResNet(depth=16, widen=1)  # n = 2 blocks per stage, widths 16/32/64


def _x() -> np.ndarray:
    return np.random.RandomState(0).randn(2, 3, 8, 8).astype(np.float32)


def _test_forward(net: RoRWideResNet, x: np.ndarray) -> np.ndarray:
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        return net(x).array


def _count_adds(y: chainer.Variable) -> int:
    seen, stack, adds = set(), [y.creator_node], 0
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        adds += node.label == "_ + _"
        stack.extend(v.creator_node for v in node.inputs)
    return adds


def test_graph_has_one_add_per_shortcut() -> None:
    """6 block shortcuts (final level) + 3 middle + 1 root = 10 additions."""
    net = _tiny()
    with chainer.using_config("train", False):
        y = net(_x())
    assert _count_adds(y) == 3 * 2 + 3 + 1


@pytest.mark.parametrize("level", ["root", "middle0", "middle1", "middle2"])
def test_zeroing_a_level_changes_the_output(level: str) -> None:
    np.random.seed(1)
    net = _tiny()
    x = _x()
    # Zero weights and BN shift: in test mode the projection then contributes exactly 0.
    ref = _test_forward(net, x)
    proj = net.root if level == "root" else net.middle[int(level[-1])]
    proj.conv.W.array[...] = 0
    proj.bn.beta.array[...] = 0
    out = _test_forward(net, x)
    assert not np.allclose(ref, out, atol=1e-5)


def test_levels_compose_as_in_the_equation() -> None:
    """x3 = G3(x2) + M3(x2) + R(x0), recomputed by hand from the pieces."""
    np.random.seed(2)
    net = _tiny()
    x = _x()
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        x0 = h = net.conv1(x)
        for s in range(3):
            g = h
            for block in net.stages[s]:
                g = block(g)
            h = g + net.middle[s](h) + (net.root(x0) if s == 2 else 0)
        manual = net.head(h).array
    np.testing.assert_allclose(_test_forward(net, x), manual, rtol=1e-5, atol=1e-6)


def test_final_level_identity_shortcut() -> None:
    """A same-width block whose branch is dropped returns its input: the block shortcut."""
    block = RoRBlock(8, 8, 1, survival=0.0)
    x = np.random.randn(2, 8, 4, 4).astype(np.float32)
    with chainer.using_config("train", True):
        np.testing.assert_array_equal(block(x).array, x)
    # At test the branch is scaled by its survival probability.
    block = RoRBlock(8, 8, 1, survival=0.25)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        a = chainer.functions.relu(block.bn1(x))
        np.testing.assert_allclose(
            block(x).array, x + 0.25 * block.residual(a).array, rtol=1e-5, atol=1e-6
        )


def test_stochastic_depth_drops_blocks_but_not_middle_or_root() -> None:
    np.random.seed(3)
    net = _tiny()
    for stage in net.stages:
        for block in stage:
            block.survival = 0.0
    with chainer.using_config("train", True):
        loss = chainer.functions.sum(net(_x()))
    net.cleargrads()
    loss.backward()
    for stage in net.stages:
        for block in stage:
            assert block.conv2.W.grad is None  # branch never computed
    for proj in [net.root, *net.middle]:
        assert proj.conv.W.grad is not None and np.abs(proj.conv.W.grad).sum() > 0


def test_test_mode_is_deterministic() -> None:
    net = _tiny()
    x = _x()
    np.testing.assert_array_equal(_test_forward(net, x), _test_forward(net, x))
