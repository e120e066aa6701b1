"""ResNeXt (paper 23): grouped convolution = C separate paths, widths, shortcuts, counts."""

from __future__ import annotations

import chainer
import chainer.functions as F
import numpy as np
import pytest
from cpu_fast_support import assert_fast_path_matches_default

import chainer_nets  # noqa: F401  (applies the compat layer)
from chainer_nets.models.resnext import ResNeXtBlock, ResNeXtCifar
from chainer_nets.recipes import get_recipe
from chainer_nets.registry import count_params, get_model_info

# name: (all parameters, conv/linear weights only; the paper counts the latter)
EXACT = {"resnext29_8x64d": (34_426_698, 34_369_216), "resnext29_16x64d": (68_155_210, 68_054_720)}
PAPER = {"resnext29_8x64d": 34.4, "resnext29_16x64d": 68.1}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_counts(name: str) -> None:
    info = get_model_info(name)
    net = info.build()
    n_all, n_weights = EXACT[name]
    assert count_params(net) == n_all and count_params(net, "weights") == n_weights
    assert info.params_counting == "weights" and round(n_weights / 1e6, 1) == PAPER[name]


def test_widths_groups_and_shortcuts() -> None:
    net = get_model_info("resnext29_16x64d").build()
    assert len(net.blocks) == 9  # depth 29 = 9 * 3 + 2
    for i, block in enumerate(net.blocks):
        stage = i // 3
        width = 16 * 64 * 2**stage  # C * d, d doubling per stage
        assert block.conv2.groups == 16
        assert block.conv2.W.shape == (width, width // 16, 3, 3)
        assert block.conv3.W.shape[0] == 256 * 2**stage
        assert block.project == (i % 3 == 0)  # projection only where the width changes
        assert block.stride == (2 if i in (3, 6) else 1)


def _block(train: bool) -> tuple[ResNeXtBlock, np.ndarray]:
    np.random.seed(0)
    block = ResNeXtBlock(16, 4 * 6, 32, cardinality=4, stride=2)
    rs = np.random.RandomState(1)
    for link in (block.bn1, block.bn2, block.bn3):  # non-trivial BN in test mode
        link.gamma.array[...] = rs.uniform(0.5, 1.5, link.gamma.shape)
        link.beta.array[...] = rs.uniform(-0.5, 0.5, link.beta.shape)
        link.avg_mean[...] = rs.uniform(-0.5, 0.5, link.avg_mean.shape)
        link.avg_var[...] = rs.uniform(0.5, 1.5, link.avg_var.shape)
    return block, rs.randn(4, 16, 10, 10).astype(np.float32)


@pytest.mark.parametrize("train", [False, True])
def test_split_transform_merge_equals_grouped_convolution(train: bool) -> None:
    """Sum of C separate paths (sliced weights) == the block's grouped-convolution transform."""
    block, x = _block(train)
    with chainer.using_config("train", train):
        grouped = block.transform(x).array
        paths = block.paths(x)
        summed = sum(p.array for p in paths)
        out = block(x).array
        merged = F.relu(block.skip(x) + block.bn3(sum(paths))).array if not train else None
    assert len(paths) == 4 and paths[0].shape == grouped.shape
    np.testing.assert_allclose(summed, grouped, rtol=1e-5, atol=1e-5)
    # no single path is the whole transform: the sum really aggregates C different terms
    assert all(not np.allclose(p.array, grouped, atol=1e-3) for p in paths)
    if merged is not None:
        np.testing.assert_allclose(merged, out, rtol=1e-5, atol=1e-5)


def test_grouped_convolution_is_block_diagonal() -> None:
    """A grouped 3x3 conv equals a dense conv whose weight is zero between groups."""
    block, x = _block(False)
    h = np.random.RandomState(2).randn(2, 24, 5, 5).astype(np.float32)
    W = block.conv2.W.array  # (24, 6, 3, 3), 4 groups of 6
    dense = np.zeros((24, 24, 3, 3), np.float32)
    for g in range(4):
        dense[g * 6 : (g + 1) * 6, g * 6 : (g + 1) * 6] = W[g * 6 : (g + 1) * 6]
    ref = F.convolution_2d(h, dense, stride=2, pad=1).array
    np.testing.assert_allclose(block.conv2(h).array, ref, rtol=1e-5, atol=1e-5)


def test_small_model_forward_backward_and_bad_arguments() -> None:
    net = ResNeXtCifar(depth=11, cardinality=2, base_width=4)
    x = np.random.RandomState(3).randn(2, 3, 32, 32).astype(np.float32)
    with chainer.using_config("train", True):
        loss = F.softmax_cross_entropy(net(x), np.array([1, 2], np.int32))
    net.cleargrads()
    loss.backward()
    assert all(p.grad is not None and np.isfinite(p.grad).all() for p in net.params())
    with chainer.using_config("train", False):
        y1, y2 = net(x).array, net(x).array
    assert y1.shape == (2, 10) and np.array_equal(y1, y2)
    with pytest.raises(ValueError, match="9n\\+2"):
        ResNeXtCifar(depth=30)
    with pytest.raises(ValueError, match="multiple of cardinality"):
        ResNeXtBlock(8, 10, 16, cardinality=4)


def test_recipe_is_the_authors() -> None:
    r = get_recipe("resnext")
    assert (r.optimizer, r.momentum, r.lr, r.weight_decay, r.batch_size) == (
        "nesterov",
        0.9,
        0.1,
        5e-4,
        128,
    )
    assert (r.length, r.milestones, r.gamma) == (300, (150, 225), 0.1)
    assert all(get_model_info(n).recipe == "resnext" for n in EXACT)


def test_cpu_fast_path_matches_chainer_default() -> None:
    """Grouped convolutions give the same outputs and gradients with and without the fast path."""
    x = np.random.RandomState(5).randn(2, 3, 16, 16).astype(np.float32)
    t = np.array([3, 7], np.int32)
    np.random.seed(5)
    net = ResNeXtCifar(depth=11, cardinality=4, base_width=4, base_channels=8)
    assert_fast_path_matches_default(net, x, t)
