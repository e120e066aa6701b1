"""Paper 4 (BN-Inception): the appendix table's widths, exact counts, BN train/test behaviour."""

from __future__ import annotations

import chainer
import chainer.functions as F
import numpy as np
import pytest

from chainer_nets import get_model, get_model_info
from chainer_nets.models import bn_inception as b
from chainer_nets.recipes import get_recipe
from chainer_nets.registry import count_params

# Exact counts (all parameters: convolution and linear weights, linear bias, BN scale and shift).
EXACT = {"bn_inception_imagenet": 11_278_528, "bn_inception": 10_262_818}
# Convolution and linear weights only (no BN, no bias) of the ImageNet configuration.
IMAGENET_WEIGHTS = 11_257_496


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_count(name: str) -> None:
    assert count_params(get_model(name)) == EXACT[name]


def test_imagenet_weight_count_and_dataset_field() -> None:
    assert count_params(get_model("bn_inception_imagenet"), "weights") == IMAGENET_WEIGHTS
    assert get_model_info("bn_inception_imagenet").dataset == "imagenet"
    assert get_model_info("bn_inception").dataset == "cifar10"


def test_module_widths_are_the_papers_table() -> None:
    model = b.BNInceptionNet(10, b.CIFAR_STEM)
    h = np.zeros((2, 192, 8, 8), np.float32)
    sizes = []
    with chainer.using_config("train", False):
        for name, module in zip(b.FIGURE5, model.inception, strict=True):
            h = module(h).array
            assert h.shape[1] == b.TABLE_OUT[name] == module.out_ch, name
            sizes.append(h.shape[2])
    assert sizes == [8, 8, 4, 4, 4, 4, 4, 2, 2, 2]  # 3c and 4e halve the grid


def test_modified_inception_structure() -> None:
    """5x5 replaced by two 3x3; stride-2 modules have no 1x1 branch and no projection;
    every convolution is bias-free and followed by BN."""
    model = b.BNInceptionNet(10, b.CIFAR_STEM)
    for name, module in zip(b.FIGURE5, model.inception, strict=True):
        kernels = {link.conv.W.shape[2:] for link in module.children()}
        assert kernels <= {(1, 1), (3, 3)}, name
        assert module.d1.conv.W.shape[2:] == module.d2.conv.W.shape[2:] == (3, 3)
        strided = b.FIGURE5[name].stride == 2
        assert hasattr(module, "b1") != strided and hasattr(module, "proj") != strided
        assert module.d2.conv.stride == module.b3.conv.stride == (b.FIGURE5[name].stride,) * 2
    names = [n for n, _ in model.namedparams()]
    assert not any(n.endswith("conv/b") for n in names)
    # every convolution has its BN; the separable first one has a single BN after both parts
    assert (
        sum(n.endswith("bn/gamma") for n in names) == sum(n.endswith("conv/W") for n in names) + 1
    )
    assert [w.pool for w in b.FIGURE5.values()].count("max") == 3  # 3c, 4e, 5b


@pytest.mark.parametrize("stem", [b.IMAGENET_STEM, b.CIFAR_STEM])
def test_first_convolution_is_separable_with_depth_multiplier_8(stem: b.Stem) -> None:
    """Depthwise k x k (8 filters per input channel, grouped by channel), then 1x1 to 64."""
    conv1 = b.BNInceptionNet(10, stem).conv1
    assert isinstance(conv1, b.SeparableConvBN) and b.DEPTH_MULTIPLIER == 8
    k = stem.first_ksize
    assert conv1.depthwise.W.shape == (24, 1, k, k) and conv1.depthwise.groups == 3
    assert conv1.depthwise.stride == (stem.first_stride,) * 2
    assert conv1.pointwise.W.shape == (64, 24, 1, 1)
    # output channel j of the depthwise part sees input channel j // 8 only
    x = np.zeros((1, 3, 9, 9), np.float32)
    x[0, 1] = np.random.RandomState(0).randn(9, 9)
    y = conv1.depthwise(x).array
    assert np.abs(y[0, 8:16]).sum() > 0 and not y[0, :8].any() and not y[0, 16:].any()
    # and the whole layer is ReLU(BN(.)) of the 1x1 mix of those 24 maps
    with chainer.using_config("train", False):
        z = F.convolution_2d(y, conv1.pointwise.W).array
        np.testing.assert_allclose(conv1(x).array, F.relu(conv1.bn(z)).array, rtol=1e-5, atol=1e-6)


def test_imagenet_first_layer_weights() -> None:
    """7^2 * 3 * 8 + 24 * 64 = 2,712 weights instead of a full 7x7 convolution's 9,408."""
    conv1 = get_model("bn_inception_imagenet").conv1
    assert conv1.depthwise.W.size + conv1.pointwise.W.size == 2_712 == 7 * 7 * 3 * 8 + 24 * 64


def test_imagenet_shapes() -> None:
    model = get_model("bn_inception_imagenet")
    x = np.zeros((1, 3, 224, 224), np.float32)
    with chainer.using_config("train", False):
        h = model.stem(x)
        assert h.shape == (1, 192, 28, 28)
        for module in model.inception:
            h = module(h)
        assert h.shape == (1, 1024, 7, 7)
        assert model(x).shape == (1, 1000)


def test_batch_statistics_in_training_moving_averages_at_test() -> None:
    """Training normalises with the batch's mean and variance (then updates the moving
    averages with decay 0.9); test mode uses the moving averages."""
    conv = b.ConvBN(3, 4, 1)
    x = np.random.RandomState(0).randn(8, 3, 5, 5).astype(np.float32) * 3 + 2
    z = F.convolution_2d(x, conv.conv.W).array
    mu, var = z.mean(axis=(0, 2, 3)), z.var(axis=(0, 2, 3))
    with chainer.using_config("train", True):
        y = conv(x).array
    expected = np.maximum((z - mu[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5), 0)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(conv.bn.avg_mean, 0.1 * mu, rtol=1e-5)
    with chainer.using_config("train", False):
        y_test = conv(x).array
    m, v = conv.bn.avg_mean, conv.bn.avg_var
    expected = np.maximum((z - m[:, None, None]) / np.sqrt(v[:, None, None] + 1e-5), 0)
    np.testing.assert_allclose(y_test, expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(y, y_test, atol=1e-2)


def test_cifar_forward_backward() -> None:
    model = get_model("bn_inception")
    x = np.random.RandomState(1).randn(2, 3, 32, 32).astype(np.float32)
    with chainer.using_config("train", True):
        loss = F.softmax_cross_entropy(model(x), np.array([0, 1], np.int32))
    model.cleargrads()
    loss.backward()
    assert np.isfinite(float(loss.array))
    assert all(p.grad is not None and np.isfinite(p.grad).all() for p in model.params())


def test_recipe_is_bn_x30() -> None:
    r = get_recipe(get_model_info("bn_inception").recipe)
    assert (r.lr, r.batch_size, r.gamma) == (0.045, 32, 0.96)
    assert r.lr == pytest.approx(30 * get_recipe("googlenet").lr)  # BN-x30
    assert r.weight_decay == pytest.approx(get_recipe("googlenet").weight_decay / 5)
    steps = np.diff((0,) + r.milestones)
    np.testing.assert_allclose(steps, 8 / 6, atol=2e-3)  # decay 6 times faster
