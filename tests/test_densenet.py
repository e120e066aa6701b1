"""DenseNet (paper 19): channel bookkeeping, BC layers, compression, dropout, memory option."""

from __future__ import annotations

import chainer
import chainer.functions as F
import numpy as np
import pytest
from cpu_fast_support import assert_fast_path_matches_default

import chainer_nets  # noqa: F401  (applies the compat layer)
from chainer_nets.models.densenet import DenseLayer, DenseNetCifar, layers_per_block
from chainer_nets.recipes import get_recipe
from chainer_nets.registry import count_params, get_model_info

# name: (all parameters, conv/linear weights only)
EXACT = {
    "densenet40_k12": (1_019_722, 1_001_616),
    "densenet100_k12": (6_979_642, 6_862_416),
    "densenet100_k24": (27_249_082, 27_017_808),
    "densenet_bc100_k12": (769_162, 745_164),
    "densenet_bc250_k24": (15_324_406, 15_066_420),
    "densenet_bc190_k40": (25_624_430, 25_367_460),
}
PAPER = {  # the paper's CIFAR table, in millions
    "densenet40_k12": 1.0,
    "densenet100_k12": 7.0,
    "densenet100_k24": 27.2,
    "densenet_bc100_k12": 0.8,
    "densenet_bc250_k24": 15.3,
    "densenet_bc190_k40": 25.6,
}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_counts(name: str) -> None:
    info = get_model_info(name)
    net = info.build()
    n_all, n_weights = EXACT[name]
    assert count_params(net) == n_all and count_params(net, "weights") == n_weights
    assert info.params_counting == "all" and round(n_all / 1e6, 1) == PAPER[name]


@pytest.mark.parametrize(
    "depth, bc, n",
    [(40, False, 12), (100, False, 32), (100, True, 16), (250, True, 41), (190, True, 31)],
)
def test_depth_to_layers_per_block(depth: int, bc: bool, n: int) -> None:
    assert layers_per_block(depth, bc) == n
    # L counts the stem, every convolution of the blocks and transitions, and the classifier
    net = DenseNetCifar(depth, 12, bottleneck=bc, compression=0.5 if bc else 1.0)
    n_weighted = sum(1 for name, _ in net.namedparams() if name.endswith("/W"))
    assert n_weighted == depth


@pytest.mark.parametrize("depth, bc", [(41, False), (6, False), (42, True), (8, True)])
def test_bad_depth_is_refused(depth: int, bc: bool) -> None:
    with pytest.raises(ValueError, match="depth"):
        DenseNetCifar(depth, 12, bottleneck=bc)


def _channels_entering_layers(net: DenseNetCifar, x: np.ndarray) -> list[list[int]]:
    """Per block, the number of channels each layer's first BN really received."""
    seen: dict[int, int] = {}

    class Hook(chainer.LinkHook):
        def forward_preprocess(self, args) -> None:
            if isinstance(args.link, DenseLayer):
                seen[id(args.link)] = sum(a.shape[1] for a in args.args)

    with Hook(), chainer.using_config("train", True):
        net(x)
    return [[seen[id(layer)] for layer in block] for block in net.blocks]


@pytest.mark.parametrize("bc, k", [(False, 5), (True, 4)])
def test_feature_maps_entering_every_layer(bc: bool, k: int) -> None:
    """Layer l of a block receives k0 + (l-1) k maps, where k0 is the block's input width."""
    depth = 16 if bc else 13  # 2 BC layers, or 3 plain layers, per block
    net = DenseNetCifar(depth, k, bottleneck=bc, compression=0.5 if bc else 1.0)
    x = np.random.RandomState(0).randn(2, 3, 16, 16).astype(np.float32)
    entering = _channels_entering_layers(net, x)
    k0 = 2 * k if bc else 16  # stem width
    n = layers_per_block(depth, bc)
    for b, channels in enumerate(entering):
        assert channels == [k0 + (ell - 1) * k for ell in range(1, n + 1)], (b, channels)
        out = k0 + n * k
        assert net.blocks[b].out_ch == out
        if b < 2:  # compression theta = 0.5 for BC (floor), 1 otherwise
            trans = net.transitions[b]
            assert trans.conv.W.shape[:2] == ((out // 2 if bc else out), out)
            k0 = trans.conv.W.shape[0]
    assert net.head.bn.gamma.shape == (k0 + n * k,)


def test_bc_layer_is_bottleneck_then_3x3() -> None:
    layer = DenseLayer(40, 12, bottleneck=True)
    assert layer.conv1.W.shape == (48, 40, 1, 1) and layer.conv2.W.shape == (12, 48, 3, 3)
    plain = DenseLayer(40, 12)
    assert plain.conv1.W.shape == (12, 40, 3, 3) and not hasattr(plain, "conv2")
    # BN-ReLU-conv by hand, in test mode
    x = np.random.RandomState(1).randn(2, 40, 6, 6).astype(np.float32)
    with chainer.using_config("train", False):
        h = layer.conv1(F.relu(layer.bn1(x)))
        by_hand = layer.conv2(F.relu(layer.bn2(h))).array
        np.testing.assert_allclose(layer(x).array, by_hand, rtol=1e-6, atol=1e-6)


def test_forward_backward_and_modes() -> None:
    net = DenseNetCifar(16, 6, bottleneck=True, compression=0.5, dropout=0.2)
    x = np.random.RandomState(2).randn(3, 3, 32, 32).astype(np.float32)
    with chainer.using_config("train", True):
        y = net(x)
        y2 = net(x).array
    assert y.shape == (3, 10)
    assert not np.allclose(y.array, y2)  # dropout draws new masks in training
    net.cleargrads()
    F.sum(y).backward()
    assert all(p.grad is not None and np.isfinite(p.grad).all() for p in net.params())
    with chainer.using_config("train", False):
        np.testing.assert_array_equal(net(x).array, net(x).array)
    # dropout modules only where asked for
    plain = DenseNetCifar(16, 6, bottleneck=True, compression=0.5)
    with chainer.using_config("train", True):
        np.testing.assert_allclose(plain(x).array, plain(x).array, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bc", [False, True])
def test_memory_efficient_gives_identical_outputs_and_gradients(bc: bool) -> None:
    kwargs = dict(depth=16 if bc else 13, growth=4, bottleneck=bc, compression=0.5 if bc else 1.0)
    np.random.seed(3)
    naive = DenseNetCifar(**kwargs)
    lean = DenseNetCifar(**kwargs, memory_efficient=True)
    lean.copyparams(naive)
    x = np.random.RandomState(3).randn(4, 3, 16, 16).astype(np.float32)
    t = np.array([0, 1, 2, 3], np.int32)
    results = []
    for net in (naive, lean):
        xv = chainer.Variable(x.copy())
        with chainer.using_config("train", True):
            loss = F.softmax_cross_entropy(net(xv), t)
        net.cleargrads()
        loss.backward()
        grads = {n: p.grad.copy() for n, p in net.namedparams()}
        stats = {
            f"{path}/{attr}": getattr(link, attr).copy()
            for path, link in net.namedlinks()
            for attr in ("avg_mean", "avg_var")
            if hasattr(link, attr)
        }
        results.append((float(loss.array), xv.grad.copy(), grads, stats))
    (l0, gx0, g0, s0), (l1, gx1, g1, s1) = results
    assert l0 == pytest.approx(l1, rel=1e-6)
    np.testing.assert_allclose(gx1, gx0, rtol=1e-5, atol=1e-7)
    assert g0.keys() == g1.keys()
    for name in g0:
        np.testing.assert_allclose(g1[name], g0[name], rtol=1e-4, atol=1e-6, err_msg=name)
    # the recomputation in backward must not update the BN running averages a second time
    assert len(s0) == len(s1) > 10
    for name in s0:
        np.testing.assert_allclose(s1[name], s0[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_memory_efficient_keeps_fewer_arrays() -> None:
    """The graph of the lean model holds fewer activation bytes than the naive one."""

    def retained_bytes(net: DenseNetCifar) -> int:
        x = np.random.RandomState(4).randn(2, 3, 16, 16).astype(np.float32)
        with chainer.using_config("train", True):
            y = net(x)
        seen, stack, total = set(), [y.creator_node], 0
        while stack:
            node = stack.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            for a in (node._retained_output_data or ()) + tuple(
                v.data for v in node.inputs if v.data is not None and v.creator_node is not None
            ):
                total += 0 if a is None else a.nbytes
            stack.extend(v.creator_node for v in node.inputs)
        return total

    kwargs = dict(depth=40, growth=12)
    assert retained_bytes(DenseNetCifar(**kwargs, memory_efficient=True)) < 0.6 * retained_bytes(
        DenseNetCifar(**kwargs)
    )


def test_recipe_is_the_papers() -> None:
    r = get_recipe("densenet")
    assert (r.optimizer, r.momentum, r.lr, r.weight_decay, r.batch_size) == (
        "nesterov",
        0.9,
        0.1,
        1e-4,
        64,
    )
    assert (r.length, r.milestones, r.gamma) == (300, (150, 225), 0.1)
    assert (r.augment.pad, r.augment.pad_mode, r.augment.flip) == (4, "mean", True)
    assert all(get_model_info(n).recipe == "densenet" for n in EXACT)


def test_cpu_fast_path_matches_chainer_default() -> None:
    """Concatenations and the recomputing layers give the same results on both CPU paths."""
    x = np.random.RandomState(6).randn(2, 3, 16, 16).astype(np.float32)
    t = np.array([1, 4], np.int32)
    np.random.seed(6)
    net = DenseNetCifar(16, 4, bottleneck=True, compression=0.5, memory_efficient=True)
    assert_fast_path_matches_default(net, x, t)
