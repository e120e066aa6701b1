"""Paper 6, PReLU-nets: the slope (0.25, channel-wise, no weight decay), He init, Table 3, SPP."""

from __future__ import annotations

import types

import chainer
import chainer.links as L
import numpy as np
import pytest

from chainer_nets import get_model, get_model_info
from chainer_nets.models.prelu_net import (
    MODELS,
    SLOPE_INIT,
    ConvPReLU,
    PReLUNet,
    he_normal,
    prelu,
    spatial_pyramid_pooling,
)
from chainer_nets.recipes import get_recipe
from chainer_nets.registry import count_params
from chainer_nets.train import build_optimizer

IMAGENET = {
    "prelu_net_a_imagenet": 178_032_072,
    "prelu_net_b_imagenet": 183_343_048,
    "prelu_net_c_imagenet": 330_623_944,
}
#: Table 3's last row: multiply-adds of one 224x224 image, in units of 10^10.
TABLE3_COMPLEXITY = {
    "prelu_net_a_imagenet": 1.90,
    "prelu_net_b_imagenet": 2.32,
    "prelu_net_c_imagenet": 5.30,
}


class MultiplyAdds(chainer.LinkHook):
    """Counts the multiply-adds of the convolutions and fully connected layers of a forward pass."""

    name = "multiply_adds"

    def __init__(self) -> None:
        self.total = 0
        self.conv_sizes: list[int] = []

    def forward_postprocess(self, args: chainer.link_hook._ForwardPostprocessCallbackArgs) -> None:
        if isinstance(args.link, L.Convolution2D):
            self.total += args.link.W.size * args.out.shape[2] * args.out.shape[3]
            self.conv_sizes.append(args.out.shape[2])
        elif isinstance(args.link, L.Linear):
            self.total += args.link.W.size


@pytest.mark.parametrize("name", sorted(IMAGENET))
def test_imagenet_counts_and_table3_complexity(name: str) -> None:
    """Pinned parameter counts; one 224x224 image costs Table 3's multiply-adds.

    The maps are 112 after the 7x7/2 convolution and 56, 28, 14 in the stages (2x2/2 pools);
    a 3x3/3 pool after the first convolution would give less than half the table's figure.
    """
    info = get_model_info(name)
    assert info.dataset == "imagenet" and info.paper_params is None  # the paper prints none
    net = info.build()
    assert count_params(net) == IMAGENET[name]
    hook = MultiplyAdds()
    x = np.zeros((1, 3, 224, 224), dtype=np.float32)
    with chainer.using_config("train", False), chainer.no_backprop_mode(), hook:
        assert net(x).shape == (1, 1000)
    assert sorted(set(hook.conv_sizes)) == [14, 28, 56, 112]
    tol = 0.01 if name.endswith("c_imagenet") else 0.005  # we compute 5.35 for C
    assert hook.total / 1e10 == pytest.approx(TABLE3_COMPLEXITY[name], rel=tol)


def test_cifar_count_and_the_2016_figure() -> None:
    net = get_model("prelu_net_a")
    assert count_params(net) == 43_952_618
    assert round(count_params(net, "weights") / 1e6, 1) == 43.9
    assert "2016 table" in get_model_info("prelu_net_a").description


def test_table3_layers() -> None:
    """A: 19 weight layers, B and C: 22; C's stages are 384/768/896 wide."""
    for model, layers in (("A", 19), ("B", 22), ("C", 22)):
        depth, widths = MODELS[model]
        assert 1 + 3 * depth + 3 == layers
    assert MODELS["C"][1] == (384, 768, 896)
    net = PReLUNet("A", cifar=False)
    assert net.stem.conv.W.shape == (96, 3, 7, 7) and net.stem.conv.stride == (2, 2)
    assert net.stem.conv.pad == (3, 3)  # 224 -> 112, as Table 3's map sizes
    assert net.fc1.W.shape == (4096, 512 * (49 + 9 + 4 + 1))


def test_slopes_are_channel_wise_and_start_at_quarter() -> None:
    net = get_model("prelu_net_a")
    slopes = [link for link in net.links() if isinstance(link, L.PReLU)]
    assert len(slopes) == 16 + 2  # 16 convolutions, 2 hidden FC layers
    assert SLOPE_INIT == 0.25
    for link in slopes:
        assert link.W.ndim == 1 and np.all(link.W.array == 0.25)
    assert sorted(link.W.shape[0] for link in slopes) == [96] + [256] * 5 + [512] * 10 + [4096] * 2


def test_prelu_formula() -> None:
    act = prelu(2)
    act.W.array[...] = [0.25, -0.5]
    x = np.array([[[-2.0], [3.0]], [[4.0], [-1.0]]], dtype=np.float32).reshape(2, 2, 1, 1)
    expected = np.where(x > 0, x, x * act.W.array.reshape(1, 2, 1, 1))
    np.testing.assert_allclose(act(x).array, expected)


def test_he_init_std() -> None:
    """Weights ~ N(0, 2 / n_l), n_l = k^2 c."""
    layer = ConvPReLU(64, 256, 3)
    w = layer.conv.W.array
    n_l = 3 * 3 * 64
    assert w.std() == pytest.approx(np.sqrt(2 / n_l), rel=0.02)
    assert abs(w.mean()) < 0.002 and np.all(layer.conv.b.array == 0)
    assert he_normal().kind == "he"


def test_spp_bins_and_values() -> None:
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, 9, 9).astype(np.float32)
    y = spatial_pyramid_pooling(x).array
    assert y.shape == (2, 3 * 63)
    # level 1x1 is the global max; level 2x2's first bin covers rows/cols 0..4 (floor 0, ceil 4.5)
    level1 = y[:, 3 * (49 + 9 + 4) :]
    np.testing.assert_allclose(level1, x.max(axis=(2, 3)))
    level2 = y[:, 3 * (49 + 9) : 3 * (49 + 9 + 4)].reshape(2, 3, 4)
    np.testing.assert_allclose(level2[:, :, 0], x[:, :, 0:5, 0:5].max(axis=(2, 3)))
    # the pooled size does not depend on the input size
    assert spatial_pyramid_pooling(rng.randn(1, 3, 13, 11).astype(np.float32)).shape == (1, 189)


def test_no_weight_decay_on_slopes() -> None:
    """One step with zero gradient: weights shrink by lr * wd, slopes stay at 0.25."""
    net = chainer.Sequential(ConvPReLU(3, 4, 3, 1, 1))
    recipe = get_recipe("prelu")
    cfg = types.SimpleNamespace(dtype="float32")
    opt = build_optimizer(net, recipe, cfg, chainer.get_device("@numpy"), recipe.lr)
    w0 = net[0].conv.W.array.copy()
    for p in net.params():
        p.grad = np.zeros_like(p.array)
    opt.update()
    np.testing.assert_allclose(
        net[0].conv.W.array, w0 * (1 - recipe.lr * recipe.weight_decay), rtol=1e-6
    )
    assert recipe.weight_decay > 0
    np.testing.assert_array_equal(net[0].act.W.array, np.full(4, 0.25, np.float32))


def test_slope_gets_its_gradient_step() -> None:
    """The slope is still trained: a non-zero gradient moves it by -lr * grad."""
    net = chainer.Sequential(ConvPReLU(3, 4, 3, 1, 1))
    recipe = get_recipe("prelu")
    opt = build_optimizer(
        net, recipe, types.SimpleNamespace(dtype="float32"), chainer.get_device("@numpy"), 0.1
    )
    for p in net.params():
        p.grad = np.zeros_like(p.array)
    net[0].act.W.grad[...] = 1.0
    opt.update()
    np.testing.assert_allclose(net[0].act.W.array, 0.25 - 0.1, rtol=1e-6)


def test_cifar_forward_backward() -> None:
    net = get_model("prelu_net_a")
    x = np.random.RandomState(1).randn(2, 3, 32, 32).astype(np.float32)
    hook = MultiplyAdds()
    with hook:
        y = net(x)
    assert y.shape == (2, 10)
    assert sorted(set(hook.conv_sizes)) == [4, 8, 16]  # no pool after the stem at 32x32
    loss = chainer.functions.softmax_cross_entropy(y, np.array([2, 5], dtype=np.int32))
    net.cleargrads()
    loss.backward()
    assert all(p.grad is not None and np.isfinite(p.grad).all() for p in net.params())
