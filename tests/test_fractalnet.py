"""Paper 16, FractalNet: expansion rule, mean joins, local/global drop-path, column extraction,
parameter count, recipe."""

from __future__ import annotations

import chainer
import chainer.functions as F
import numpy as np
import pytest

from chainer_nets import get_model, get_model_info
from chainer_nets.models.fractalnet import FractalBlock, FractalNet, join, local_keep_mask
from chainer_nets.recipes import get_recipe
from chainer_nets.registry import count_params

P_LOCAL = 0.15


def tiny(n_columns: int = 3, **kw) -> FractalNet:
    """Three blocks of width 4: 8x8 inputs pool down to 1x1."""
    kw.setdefault("widths", (4, 4, 4))
    kw.setdefault("dropouts", (0.0, 0.0, 0.0))
    return FractalNet(n_columns=n_columns, **kw)


def images(n: int = 3, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randn(n, 3, size, size).astype(np.float32)


def reference_block(block: FractalBlock, x: chainer.Variable) -> chainer.Variable:
    """The expansion rule read literally: f_1(z) = conv(z), f_{k+1}(z) = f_k(f_k(z)) (+) conv(z),
    with the inputs meeting at one depth merged into one mean (lists are concatenated and only
    averaged where they are consumed). Column ``off`` is the shallow conv of a sub-fractal."""
    used = [0] * block.n_columns

    def expand(k: int, z, off: int) -> list:
        if k == 1:
            unit = block.columns[off][used[off]]
            used[off] += 1
            return [unit(z)]
        first = expand(k - 1, z, off + 1)
        mid = sum(first[1:], first[0]) / len(first)
        return expand(k - 1, mid, off + 1) + expand(1, z, off)

    outs = [block.pool(h) for h in expand(block.n_columns, x, 0)]
    assert used == [2**c for c in range(block.n_columns)]
    return sum(outs[1:], outs[0]) / len(outs)


def column_chain(net: FractalNet, x: np.ndarray, column: int) -> chainer.Variable:
    """Column ``column`` of every block as a plain chain of units, then the head."""
    h = x
    for block in net.blocks:
        for unit in block.columns[column]:
            h = unit(h)
        h = F.max_pooling_2d(h, 2, 2, cover_all=False)
    return net.head(h)


def conv_grads(net: FractalNet) -> dict[tuple[int, int], bool]:
    """(block, column) -> whether any conv of that column got a non-zero gradient."""
    out = {}
    for b, block in enumerate(net.blocks):
        for c, col in enumerate(block.columns):
            out[b, c] = any(
                u.conv.W.grad is not None and np.abs(u.conv.W.grad).sum() > 0 for u in col
            )
    return out


# ---------------------------------------------------------------------------------------------
# Structure


@pytest.mark.parametrize("n_columns", [1, 2, 3, 4])
def test_expansion_structure(n_columns: int) -> None:
    """2^C - 1 convs per block, column c has 2^c, deepest path B * 2^(C-1)."""
    block = FractalBlock(3, 4, n_columns)
    assert [len(col) for col in block.columns] == [2**c for c in range(n_columns)]
    assert sum(len(col) for col in block.columns) == 2**n_columns - 1
    assert block.depth == 2 ** (n_columns - 1)
    assert tiny(n_columns).depth == 3 * 2 ** (n_columns - 1)


def test_merged_join_schedule() -> None:
    """C=4: joins at depths 2, 4, 6, 8 with 2, 3, 2, 4 inputs (Fig. 1); odd depths have none."""
    block = FractalBlock(3, 4, 4)
    sizes = {d: len(cols) for d, cols in block.joins.items() if len(cols) > 1}
    assert sizes == {2: 2, 4: 3, 6: 2, 8: 4}


def test_fractalnet20_layout() -> None:
    """B=5, C=3: 20 layers deep, 7 convs per block, widths 64..512, dropout 0..0.4 per block."""
    net = get_model("fractalnet20")
    assert net.depth == 20 and len(net.blocks) == 5
    assert [sum(len(c) for c in b.columns) for b in net.blocks] == [7] * 5
    assert [b.columns[0][0].conv.W.shape[0] for b in net.blocks] == [64, 128, 256, 512, 512]
    rates = [{u.dropout for col in b.columns for u in col} for b in net.blocks]
    assert rates == [{0.0}, {0.1}, {0.2}, {0.3}, {0.4}]
    assert (net.local_drop, net.global_ratio) == (P_LOCAL, 0.5)


def test_parameter_count_pinned() -> None:
    """33,724,618 parameters; conv + linear weights 9*sum(3 c_{b-1} c_b + 4 c_b^2) + 512*10."""
    net = get_model("fractalnet20")
    widths = [3, 64, 128, 256, 512, 512]
    convs = sum(9 * (3 * a * b + 4 * b * b) for a, b in zip(widths[:-1], widths[1:], strict=True))
    assert count_params(net, "weights") == convs + 5120 == 33_704_000
    bn = 2 * 7 * sum(widths[1:])
    assert count_params(net) == 33_704_000 + bn + 10 == 33_724_618
    assert round(count_params(net, "weights") / 1e6, 1) == 33.7  # the 2016 table; paper 38.6


# ---------------------------------------------------------------------------------------------
# Joins


def test_join_is_the_elementwise_mean() -> None:
    rs = np.random.RandomState(0)
    a, b, c = (rs.randn(2, 3, 4, 4).astype(np.float32) for _ in range(3))
    np.testing.assert_allclose(join([a, b, c]).array, (a + b + c) / 3, rtol=1e-6)
    np.testing.assert_allclose(join([a, b, c], np.array([True, False, True])).array, (a + c) / 2)
    np.testing.assert_array_equal(join([a, b, c], np.array([False, True, False])).array, b)


@pytest.mark.parametrize("n_columns", [2, 3, 4])
def test_block_follows_expansion_rule_with_mean_joins(n_columns: int) -> None:
    """Test mode, all columns: equals the literal recursive rule with merged mean joins."""
    block = FractalBlock(3, 4, n_columns)
    x = images(2, 8)
    with chainer.using_config("train", False):
        np.testing.assert_allclose(
            block(x).array, reference_block(block, x).array, rtol=1e-5, atol=1e-6
        )


def test_join_weights_are_equal_not_pairwise() -> None:
    """C=3 written out: the last join is (u0 + v1 + w3)/3, not the pairwise 1/2, 1/4, 1/4."""
    block = FractalBlock(3, 4, 3)
    x = images(2, 8)
    u, v, w = (list(col) for col in block.columns)
    with chainer.using_config("train", False):
        j2 = (v[0](x) + w[1](w[0](x))) / 2
        p = block.pool
        heads = [p(u[0](x)), p(v[1](j2)), p(w[3](w[2](j2)))]
        manual = (heads[0] + heads[1] + heads[2]) / 3
        pairwise = heads[0] / 2 + heads[1] / 4 + heads[2] / 4
        out = block(x).array
    np.testing.assert_allclose(out, manual.array, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out, pairwise.array, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# Local drop-path


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_local_drop_keeps_one_and_matches_rate(n: int) -> None:
    """Never all dropped; each input's drop rate is p - p^n / n (p, less the forced survivor)."""
    rng = np.random.RandomState(0)
    draws = 40000
    masks = np.array([local_keep_mask(n, P_LOCAL, rng) for _ in range(draws)])
    assert masks.any(axis=1).all()
    expected = P_LOCAL - P_LOCAL**n / n if n > 1 else 0.0
    sigma = np.sqrt(max(expected * (1 - expected), 1e-12) / draws)
    rates = 1.0 - masks.mean(axis=0)
    assert np.all(np.abs(rates - expected) < 5 * sigma + 1e-12), (rates, expected)
    if n > 2:  # independent drops: both of two inputs gone, unless the survivor is forced
        both = np.mean(~masks[:, 0] & ~masks[:, 1])
        exact = P_LOCAL**2 * (1 - P_LOCAL ** (n - 2)) + P_LOCAL**n * (n - 2) / n
        assert abs(both - exact) < 5 * np.sqrt(exact / draws)
    elif n == 2:  # both dropped is impossible; one dropped at rate 2 * (p(1-p) + p^2 / 2)
        assert np.mean(masks.sum(axis=1) == 1) == pytest.approx(
            2 * P_LOCAL * (1 - P_LOCAL) + P_LOCAL**2, abs=0.01
        )


def test_local_drop_path_in_the_block_averages_the_survivors() -> None:
    """Train mode, local: the recorded masks say which inputs each join averaged."""
    np.random.seed(3)
    block = FractalBlock(3, 4, 3)
    x = images(4, 8)
    u, v, w = (list(col) for col in block.columns)
    seen_drop = False
    with chainer.using_config("train", True):
        for _ in range(30):
            out = block(x, drop=0.5).array
            m2, m4 = block.last_masks[2], block.last_masks[4]
            assert m2.shape == (2,) and m4.shape == (3,) and m2.any() and m4.any()
            seen_drop |= not (m2.all() and m4.all())
            j2 = join([v[0](x), w[1](w[0](x))], m2)
            p = block.pool
            manual = join([p(u[0](x)), p(v[1](j2)), p(w[3](w[2](j2)))], m4)
            np.testing.assert_allclose(out, manual.array, rtol=1e-5, atol=1e-6)
    assert seen_drop


# ---------------------------------------------------------------------------------------------
# Global drop-path and the local/global mix


def test_half_of_the_minibatches_are_global_with_uniform_columns() -> None:
    np.random.seed(0)
    net = tiny(3)
    plans = [net.sample_plan() for _ in range(30000)]
    kinds = np.array([k == "global" for k, _ in plans])
    assert abs(kinds.mean() - 0.5) < 0.015
    cols = np.bincount([c for k, c in plans if k == "global"], minlength=3) / kinds.sum()
    np.testing.assert_allclose(cols, [1 / 3] * 3, atol=0.02)
    assert {c for k, c in plans if k == "local"} == {None}


def test_global_drop_path_uses_exactly_one_column_end_to_end() -> None:
    """A global mini-batch is column c's plain chain through every block, and only column c's
    convolutions receive gradient."""
    net = tiny(3, global_ratio=1.0)
    x = images(3, 8)
    seen = set()
    for seed in range(40):
        np.random.seed(seed)
        net.cleargrads()
        with chainer.using_config("train", True):
            y = net(x)
            kind, c = net.last_plan
            assert kind == "global"
            np.testing.assert_allclose(y.array, column_chain(net, x, c).array, rtol=1e-5, atol=1e-6)
            F.sum(y * y).backward()
        grads = conv_grads(net)
        assert {k for k, g in grads.items() if g} == {(b, c) for b in range(3)}
        seen.add(c)
        if seen == {0, 1, 2}:
            break
    assert seen == {0, 1, 2}


def test_training_forward_is_stochastic_and_seedable() -> None:
    net = tiny(3)
    x = images(4, 8)
    with chainer.using_config("train", True):
        np.random.seed(7)
        a = [net(x).array for _ in range(6)]
        np.random.seed(7)
        b = [net(x).array for _ in range(6)]
    for ya, yb in zip(a, b, strict=True):
        np.testing.assert_allclose(ya, yb, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(a[0], y, atol=1e-4) for y in a[1:])


# ---------------------------------------------------------------------------------------------
# Test mode and column extraction


def test_test_mode_is_deterministic_and_uses_all_columns() -> None:
    net = tiny(3, dropouts=(0.0, 0.3, 0.3))
    x = images(3, 8)
    np.random.seed(0)
    with chainer.using_config("train", False):
        y1 = net(x)
        y2 = net(x).array
        assert net.last_plan == ("all", None)
        h = x
        for block in net.blocks:
            h = reference_block(block, h)
        np.testing.assert_allclose(y1.array, net.head(h).array, rtol=1e-5, atol=1e-6)
        net.cleargrads()
        F.sum(y1 * y1).backward()
    np.testing.assert_array_equal(y1.array, y2)
    assert all(conv_grads(net).values())


def test_deepest_column_mode_uses_only_the_deepest_column() -> None:
    net = tiny(3)
    x = images(3, 8)
    net.inference_column = -1
    with chainer.using_config("train", False):
        y = net(x)
        assert net.last_plan == ("global", 2)
        np.testing.assert_allclose(y.array, column_chain(net, x, 2).array, rtol=1e-5, atol=1e-6)
        net.cleargrads()
        F.sum(y * y).backward()
    assert {k for k, g in conv_grads(net).items() if g} == {(b, 2) for b in range(3)}
    net.inference_column = None
    with chainer.using_config("train", False):
        assert not np.allclose(net(x).array, y.array, atol=1e-4)


def test_no_drop_path_variant_trains_on_all_columns() -> None:
    """local_drop=0, global_ratio=0: the paper's plain FractalNet row (every join keeps all)."""
    net = tiny(3, local_drop=0.0, global_ratio=0.0)
    with chainer.using_config("train", True):
        net(images(2, 8))
    assert net.last_plan == ("all", None)
    assert all(b.last_masks == {} for b in net.blocks)


def test_tiny_batch_is_overfit() -> None:
    np.random.seed(0)
    net = tiny(3, widths=(8, 8, 8))
    x = images(16, 8, seed=1)
    t = np.random.RandomState(2).randint(0, 10, 16).astype(np.int32)
    opt = chainer.optimizers.MomentumSGD(lr=0.05, momentum=0.9)
    opt.setup(net)
    with chainer.using_config("train", True):
        first = float(F.softmax_cross_entropy(net(x), t).array)
        for _ in range(40):
            loss = F.softmax_cross_entropy(net(x), t)
            net.cleargrads()
            loss.backward()
            opt.update()
    assert float(loss.array) < 0.5 * first


# ---------------------------------------------------------------------------------------------
# Registry and recipe


def test_registry_and_recipe() -> None:
    info = get_model_info("fractalnet20")
    assert (info.paper_no, info.arxiv, info.recipe, info.paper_accuracy) == (
        16,
        "1605.07648",
        "fractalnet",
        95.40,
    )
    r = get_recipe("fractalnet")
    assert (r.optimizer, r.momentum, r.lr, r.batch_size, r.weight_decay) == (
        "momentum_sgd",
        0.9,
        0.02,
        100,
        0.0,
    )
    assert r.in_iterations(500) == (200000, (100000, 150000, 175000, 187500))
    assert len(r.departures) >= 4
