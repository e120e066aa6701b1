"""Paper 9 (Inception-v4, Inception-ResNet-v1/v2): the figures' widths and grid sizes, the
residual scaling, parameter counts pinned against public checkpoints and the figures."""

from __future__ import annotations

import chainer
import numpy as np
import pytest

from chainer_nets import get_model, get_model_info, list_models
from chainer_nets.models import inception_v4 as v4
from chainer_nets.recipes import get_recipe
from chainer_nets.registry import count_params

EXACT = {
    # the public PyTorch ports of the TF-slim checkpoints (Cadene pretrainedmodels, timm,
    # imgclsmob) at 1000 classes: Inception-v4 42,679,816 and Inception-ResNet-v2 55,843,464
    "inception_v4_imagenet": 42_679_816,
    "inception_resnet_v2_tfslim_imagenet": 55_843_464,
    # no public count: checked against the figures' arithmetic below
    "inception_resnet_v1_imagenet": 22_756_328,
    "inception_resnet_v2_imagenet": 32_433_928,
    "inception_v4": 41_158_186,
    "inception_resnet_v1": 20_981_258,
    "inception_resnet_v2": 30_310_378,
}
KERAS_IRV2, IRV2_BN_CHANNELS = 55_873_736, 30_272  # Keras: BN shift, mean, variance; no scale


def _x(c: int, s: int, n: int = 1) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, c, s, s)).astype(np.float32)


def _run(link: chainer.Link, x: np.ndarray) -> tuple:
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        return link(x).shape


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_count(name: str) -> None:
    assert count_params(get_model(name)) == EXACT[name]


def test_keras_count_of_released_inception_resnet_v2() -> None:
    """Keras counts 3 numbers per BN channel (no scale), we count 2 (scale and shift)."""
    model = get_model("inception_resnet_v2_tfslim_imagenet")
    bn = sum(p.size for n, p in model.namedparams() if n.endswith("gamma"))
    assert bn == IRV2_BN_CHANNELS
    assert count_params(model) == KERAS_IRV2 - bn


def _cb(i: int, o: int, kh: int, kw: int | None = None) -> int:
    return i * o * kh * (kw or kh) + 2 * o  # convolution without bias + BN scale and shift


def _lin(i: int, o: int) -> int:
    return i * o + o  # linear 1x1 convolution (or fully connected) with bias


def _reduction_a(c: int, k: int, l: int, m: int, n: int) -> int:  # noqa: E741
    return _cb(c, n, 3) + _cb(c, k, 1) + _cb(k, l, 3) + _cb(l, m, 3)


def _reduction_b(c: int, a: tuple, b: tuple, d: tuple) -> int:
    return (
        _cb(c, a[0], 1)
        + _cb(a[0], a[1], 3)
        + _cb(c, b[0], 1)
        + _cb(b[0], b[1], 3)
        + _cb(c, d[0], 1)
        + _cb(d[0], d[1], 3)
        + _cb(d[1], d[2], 3)
    )


def test_inception_resnet_v1_count_from_the_figures() -> None:
    """Figures 14, 10, 7 (Table 1: 192, 192, 256, 384), 11, 12, 13, typed out layer by layer."""
    stem = (
        _cb(3, 32, 3) + _cb(32, 32, 3) + _cb(32, 64, 3) + _cb(64, 80, 1) + _cb(80, 192, 3)
    ) + _cb(192, 256, 3)
    a = 3 * _cb(256, 32, 1) + 3 * _cb(32, 32, 3) + _lin(96, 256)
    b = 2 * _cb(896, 128, 1) + _cb(128, 128, 1, 7) + _cb(128, 128, 7, 1) + _lin(256, 896)
    c = 2 * _cb(1792, 192, 1) + _cb(192, 192, 1, 3) + _cb(192, 192, 3, 1) + _lin(384, 1792)
    red_a = _reduction_a(256, 192, 192, 256, 384)  # 256 + 384 + 256 = 896
    red_b = _reduction_b(896, (256, 384), (256, 256), (256, 256, 256))  # -> 1792
    total = stem + 5 * a + red_a + 10 * b + red_b + 5 * c + _lin(1792, 1000)
    assert count_params(get_model("inception_resnet_v1_imagenet")) == total


def test_inception_resnet_v2_count_from_the_figures() -> None:
    """Figures 3, 16, 7 (256, 256, 384, 384), 17, 18, 19; widths 384, 1152, 2144."""
    stem = count_params(v4.StemV4())
    a = 3 * _cb(384, 32, 1) + _cb(32, 32, 3) + _cb(32, 48, 3) + _cb(48, 64, 3) + _lin(128, 384)
    b = _cb(1152, 192, 1) + _cb(1152, 128, 1) + _cb(128, 160, 1, 7) + _cb(160, 192, 7, 1)
    b += _lin(384, 1152)
    c = _cb(2144, 192, 1) + _cb(2144, 192, 1) + _cb(192, 224, 1, 3) + _cb(224, 256, 3, 1)
    c += _lin(448, 2144)
    red_a = _reduction_a(384, 256, 256, 384, 384)
    red_b = _reduction_b(1152, (256, 384), (256, 288), (256, 288, 320))
    total = stem + 5 * a + red_a + 10 * b + red_b + 5 * c + _lin(2144, 1000)
    assert count_params(get_model("inception_resnet_v2_imagenet")) == total
    # the stem of Figure 3, typed out
    assert stem == (
        _cb(3, 32, 3)
        + _cb(32, 32, 3)
        + _cb(32, 64, 3)
        + _cb(64, 96, 3)
        + 2 * _cb(160, 64, 1)
        + _cb(64, 96, 3)
        + _cb(64, 64, 7, 1)
        + _cb(64, 64, 1, 7)
        + _cb(64, 96, 3)
        + _cb(192, 192, 3)
    )


def test_stems_reach_35x35_on_299_and_keep_32x32_on_cifar() -> None:
    x = _x(3, 299)
    assert _run(v4.StemV4(v4.IMAGENET_STEM), x) == (1, 384, 35, 35)
    assert _run(v4.StemResNetV1(v4.IMAGENET_STEM), x) == (1, 256, 35, 35)
    assert _run(v4.StemTFSlimV2(v4.IMAGENET_STEM), x) == (1, 320, 35, 35)
    for stem in (v4.StemV4, v4.StemResNetV1):
        assert _run(stem(v4.CIFAR_STEM), _x(3, 32))[2:] == (32, 32)


def test_inception_v4_module_widths_and_reductions() -> None:
    """Figures 4-8: A keeps 35x35x384; Reduction-A (192, 224, 256, 384) -> 17x17x1024;
    B keeps 1024; Reduction-B -> 8x8x1536; C keeps 1536."""
    assert _run(v4.InceptionA(384), _x(384, 35)) == (1, 384, 35, 35)
    red_a = v4.ReductionA(384, 192, 224, 256, 384)
    assert _run(red_a, _x(384, 35)) == (1, 1024, 17, 17) and red_a.out_ch == 1024
    assert _run(v4.InceptionB(1024), _x(1024, 17)) == (1, 1024, 17, 17)
    red_b = v4.ReductionB(1024)
    assert _run(red_b, _x(1024, 17)) == (1, 1536, 8, 8) and red_b.out_ch == 1536
    assert _run(v4.InceptionC(1536), _x(1536, 8)) == (1, 1536, 8, 8)
    # branch widths of B (Figure 5): 128 | 384 | 256 | 256
    b = v4.InceptionB(1024)
    assert (b.proj.conv.W.shape[0], b.b1.conv.W.shape[0]) == (128, 384)
    assert (b.s3.conv.W.shape[0], b.d5.conv.W.shape[0]) == (256, 256)
    assert [b.d2.conv.W.shape[2:], b.d3.conv.W.shape[2:]] == [(1, 7), (7, 1)]


@pytest.mark.parametrize(
    "layout, widths", [(v4.V1, (256, 896, 1792)), (v4.V2, (384, 1152, 2144))], ids=["v1", "v2"]
)
def test_inception_resnet_grid_widths(layout: v4.Layout, widths: tuple) -> None:
    """Figure 15: every residual block keeps its grid's width; the reductions give the next."""
    model = v4.InceptionResNet(layout, 1000)
    assert model.stem.out_ch == widths[0]
    outs = [block.out_ch for block in model.blocks]
    assert outs == [widths[0]] * 5 + [widths[1]] * 11 + [widths[2]] * 6
    red_a, red_b = model.blocks[5], model.blocks[16]
    assert _run(red_a, _x(widths[0], 35)) == (1, widths[1], 17, 17)
    assert _run(red_b, _x(widths[1], 17)) == (1, widths[2], 8, 8)
    a = model.blocks[0]
    assert _run(a, _x(widths[0], 35)) == (1, widths[0], 35, 35)
    # the linear 1x1 projects the concatenation back to the grid's width, with a bias, no BN
    assert a.up.W.shape[:2] == (widths[0], 96 if layout is v4.V1 else 128)
    assert a.up.b is not None


def test_residual_scaling_is_applied() -> None:
    """y = ReLU(x + s * W[branches]): s = 0 gives ReLU(x); s = 0.25 a quarter of the residual."""
    x = _x(64, 9, n=2)
    block0 = v4.InceptionResNetA(64, 8, (8, 8), (8, 12, 16), scale=0.0)
    block = v4.InceptionResNetA(64, 8, (8, 8), (8, 12, 16), scale=0.25)
    block.copyparams(block0)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        np.testing.assert_array_equal(block0(x).array, np.maximum(x, 0))
        r = block.up(block.mixed(x)).array
        assert float(np.abs(r).max()) > 0.1
        np.testing.assert_allclose(block(x).array, np.maximum(x + 0.25 * r, 0), atol=1e-5)
        np.testing.assert_allclose(block.residual(x).array, 0.25 * r, atol=1e-6)
    c = v4.InceptionResNetC(64, 8, (8, 8, 8), scale=0.5, activation=False)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        r = c.up(c.mixed(x)).array
        np.testing.assert_allclose(c(x).array, x + 0.5 * r, atol=1e-5)  # no ReLU


def test_network_scale_argument_reaches_every_block() -> None:
    model = v4.InceptionResNet(v4.V1, 10, v4.CIFAR_STEM, scale=0.3)
    scales = [b.scale for b in model.blocks if isinstance(b, v4.ResidualInception)]
    assert scales == [0.3] * 20
    model = v4.InceptionResNet(v4.V1, 10, v4.CIFAR_STEM)
    scales = [b.scale for b in model.blocks if isinstance(b, v4.ResidualInception)]
    assert scales == [0.17] * 5 + [0.10] * 10 + [0.20] * 5


def test_cifar_variant_forward_backward() -> None:
    np.random.seed(0)
    model = get_model("inception_resnet_v1")
    x = _x(3, 32, n=2)
    t = np.array([1, 7], np.int32)
    with chainer.using_config("train", True):
        h = model.features(x)
        assert h.shape == (2, 1792, 7, 7)  # 32 -> 15 -> 7 after the two reductions
        loss = chainer.functions.softmax_cross_entropy(model.head(h), t)
        model.cleargrads()
        loss.backward()
    assert np.isfinite(float(loss.array))
    assert all(p.grad is not None and np.isfinite(p.grad).all() for p in model.params())


def test_registry_entries_and_recipe() -> None:
    names = {i.name for i in list_models() if i.paper_no == 9}
    assert names == set(EXACT)
    for name in names:
        info = get_model_info(name)
        assert info.arxiv == "1602.07261" and info.recipe == "inception_v4"
        assert info.dataset == ("imagenet" if name.endswith("_imagenet") else "cifar10")
        assert info.paper_accuracy is None and info.paper_params is None  # the paper gives none
    assert get_model_info("inception_v4").kwargs["stem"] == v4.CIFAR_STEM
    r = get_recipe("inception_v4")
    assert (r.lr, r.gamma, r.momentum) == (0.045, 0.94, 0.9)
    assert r.milestones == tuple(range(2, r.length, 2))
    assert any("RMSProp" in d for d in r.departures)
