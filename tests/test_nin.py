"""Paper 1, Network In Network: mlpconv layers, Caffe's pooling sizes, the GAP head."""

from __future__ import annotations

import chainer
import numpy as np
import pytest

from chainer_nets import get_model, get_model_info
from chainer_nets.models.nin import NIN, MLPConv, caffe_average_pooling
from chainer_nets.registry import count_params


def test_exact_parameter_counts() -> None:
    assert count_params(get_model("nin")) == 966_986
    assert count_params(get_model("nin_aug")) == 966_986
    assert count_params(get_model("nin"), "weights") == 965_568
    # the BN variant: same convolutions, BN scale and shift on every conv's input
    assert count_params(get_model("nin_bn"), "weights") == 965_568
    assert count_params(get_model("nin_bn")) == 969_808


def test_paper_errors_and_recipes() -> None:
    """Table 1: 10.41% without augmentation, 8.81% with; the BN variant has no paper number."""
    assert get_model_info("nin").paper_accuracy == 89.59
    assert get_model_info("nin_aug").paper_accuracy == 91.19
    assert get_model_info("nin_bn").paper_accuracy is None
    from chainer_nets.recipes import get_recipe

    plain, aug = get_recipe(get_model_info("nin").recipe), get_recipe("nin_aug")
    assert plain.augment.pad == 0 and not plain.augment.flip
    assert aug.augment.pad > 0 and aug.augment.flip
    assert (plain.lr, plain.weight_decay, plain.batch_size) == (aug.lr, aug.weight_decay, 128)


def test_mlpconv_is_a_per_pixel_mlp() -> None:
    """The 1x1 layers act on each pixel's channel vector: the block equals a conv + a dense MLP."""
    rng = np.random.RandomState(0)
    block = MLPConv(3, (5, 4, 2), ksize=3, pad=1)
    for conv in block.layers:
        conv.b.array[...] = rng.randn(*conv.b.shape)
    x = rng.randn(2, 3, 6, 6).astype(np.float32)
    first = np.maximum(
        chainer.functions.convolution_2d(x, block.layers[0].W, block.layers[0].b, pad=1).array, 0
    )
    # recompute the 1x1 layers as matrix products over channels, pixel by pixel
    pixels = first.transpose(0, 2, 3, 1).reshape(-1, 5)
    for conv in block.layers[1:]:
        pixels = np.maximum(pixels @ conv.W.array[:, :, 0, 0].T + conv.b.array, 0)
    expected = pixels.reshape(2, 6, 6, 2).transpose(0, 3, 1, 2)
    assert [c.W.shape[2:] for c in block.layers] == [(3, 3), (1, 1), (1, 1)]
    np.testing.assert_allclose(block(x).array, expected, rtol=1e-4, atol=1e-5)


def test_widths_and_kernels_of_the_cifar_network() -> None:
    net = NIN()
    shapes = [c.W.shape for b in (net.mlpconv1, net.mlpconv2, net.mlpconv3) for c in b.layers]
    assert shapes == [
        (192, 3, 5, 5), (160, 192, 1, 1), (96, 160, 1, 1),
        (192, 96, 5, 5), (192, 192, 1, 1), (192, 192, 1, 1),
        (192, 192, 3, 3), (192, 192, 1, 1), (10, 192, 1, 1),
    ]  # fmt: skip
    assert not any(n.startswith("/fc") or "linear" in n.lower() for n, _ in net.namedparams())


def test_caffe_average_pooling_rounds_up_and_clips() -> None:
    x = np.arange(2 * 16 * 16, dtype=np.float32).reshape(1, 2, 16, 16)
    y = caffe_average_pooling(x, 3, 2).array
    assert y.shape == (1, 2, 8, 8)  # Caffe: ceil((16-3)/2)+1 = 8 (floor would give 7)
    assert y[0, 0, 0, 0] == pytest.approx(x[0, 0, 0:3, 0:3].mean())
    assert y[0, 1, 7, 7] == pytest.approx(x[0, 1, 14:16, 14:16].mean())  # clipped window
    assert y[0, 0, 3, 7] == pytest.approx(x[0, 0, 6:9, 14:16].mean())


def test_head_is_global_average_of_the_class_maps() -> None:
    """The scores are the spatial means of the last mlpconv's 10 maps (no FC layer)."""
    net = NIN()
    x = np.random.RandomState(1).randn(2, 3, 32, 32).astype(np.float32)
    with chainer.using_config("train", False):
        h = net.mlpconv1(x)
        h = chainer.functions.max_pooling_2d(h, 3, 2)
        assert h.shape[2:] == (16, 16)
        h = caffe_average_pooling(net.mlpconv2(h), 3, 2)
        maps = net.mlpconv3(h).array
        assert maps.shape == (2, 10, 8, 8)
        np.testing.assert_allclose(net(x).array, maps.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
        assert (maps >= 0).all()  # a ReLU follows the 10-map layer too


def test_dropout_after_the_first_two_pools_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Caffe definition: dropout 0.5 on pool1 (96 maps, 16x16) and pool2 (192, 8x8)."""
    from chainer_nets.models import nin

    seen = []
    real = chainer.functions.dropout

    def spy(x: chainer.Variable, ratio: float = 0.5, **kw: object) -> chainer.Variable:
        seen.append((x.shape[1:], ratio))
        return real(x, ratio, **kw)

    monkeypatch.setattr(nin.F, "dropout", spy)
    NIN()(np.zeros((1, 3, 32, 32), np.float32))
    assert seen == [((96, 16, 16), 0.5), ((192, 8, 8), 0.5)]


def test_dropout_only_in_training() -> None:
    net = NIN()
    x = np.random.RandomState(2).randn(2, 3, 32, 32).astype(np.float32)
    with chainer.using_config("train", False):
        a, b = net(x).array, net(x).array
    np.testing.assert_array_equal(a, b)
    with chainer.using_config("train", True):
        assert not np.allclose(net(x).array, a)


@pytest.mark.parametrize("name", ["nin", "nin_bn"])
def test_forward_backward_small_batch(name: str) -> None:
    net = get_model(name)
    x = np.random.RandomState(3).randn(2, 3, 32, 32).astype(np.float32)
    t = np.array([1, 7], dtype=np.int32)
    loss = chainer.functions.softmax_cross_entropy(net(x), t)
    net.cleargrads()
    loss.backward()
    assert np.isfinite(float(loss.array))
    assert all(p.grad is not None and np.isfinite(p.grad).all() for p in net.params())
