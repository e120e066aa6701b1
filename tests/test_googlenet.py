"""Paper 3 (GoogLeNet): Table 1's widths, exact counts, auxiliary heads at training time only."""

from __future__ import annotations

import chainer
import chainer.functions as F
import numpy as np
import pytest

from chainer_nets import get_model, get_model_info
from chainer_nets.models import googlenet as g
from chainer_nets.registry import count_params

# Exact counts of our implementations (all parameters: weights and biases).
EXACT = {"googlenet_imagenet": 13_378_280, "googlenet": 10_326_350}
# The BVLC reference GoogLeNet (Caffe model zoo, deploy definition: no auxiliary heads).
BVLC_DEPLOY = 6_998_552


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_count(name: str) -> None:
    assert count_params(get_model(name)) == EXACT[name]


def test_imagenet_count_equals_bvlc_reference_without_aux_heads() -> None:
    model = get_model("googlenet_imagenet")
    aux = sum(p.size for p in model.aux.params())
    assert count_params(model) - aux == BVLC_DEPLOY
    # each head: 1x1 conv to 128 (+bias), FC 128*4*4 -> 1024, FC 1024 -> 1000
    per_head = [c * 128 + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000 for c in (512, 528)]
    assert aux == sum(per_head)


def test_registry_marks_the_imagenet_configuration() -> None:
    assert get_model_info("googlenet_imagenet").dataset == "imagenet"
    assert get_model_info("googlenet").dataset == "cifar10"


def test_module_widths_are_table_1() -> None:
    """Each module's output equals Table 1's "output size" depth, built and measured."""
    table_out = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528,
                 "4e": 832, "5a": 832, "5b": 1024}  # fmt: skip
    model = g.GoogLeNet(10, g.CIFAR_STEM, aux=False)
    h = np.zeros((1, 192, 4, 4), np.float32)
    with chainer.using_config("train", False):
        for name, module in zip(g.TABLE1, model.inception, strict=True):
            h = module(h).array
            assert h.shape[1] == table_out[name] == module.out_ch, name
    m3a = model.inception[0]
    assert (m3a.b1.W.shape[0], m3a.r3.W.shape[0], m3a.b3.W.shape, m3a.b5.W.shape) == (
        64, 96, (128, 96, 3, 3), (32, 16, 5, 5)
    )  # fmt: skip


def test_imagenet_shapes() -> None:
    """One 224x224 image reaches 7x7x1024 before the pooling and gives 1000 scores."""
    model = get_model("googlenet_imagenet")
    x = np.zeros((1, 3, 224, 224), np.float32)
    with chainer.using_config("train", False):
        h = model.stem(x)
        assert h.shape == (1, 192, 28, 28)
        for name, module in zip(g.TABLE1, model.inception, strict=True):
            h = module(h)
            if name in g.POOL_AFTER:
                h = g.max_pool_s2(h)
        assert h.shape == (1, 1024, 7, 7)
        assert model(x).shape == (1, 1000) and model.aux_logits == []


def test_aux_heads_only_in_training_with_weight_0_3() -> None:
    np.random.seed(0)
    model = g.GoogLeNet(10, g.CIFAR_STEM)
    rs = np.random.RandomState(0)
    x = rs.randn(2, 3, 32, 32).astype(np.float32)
    t = np.array([3, 7], np.int32)
    with chainer.using_config("train", True):
        y = model(x)
        assert len(model.aux_logits) == 2
        assert [a.shape for a in model.aux_logits] == [(2, 10), (2, 10)]
        loss = model.loss(y, t)
        expected = F.softmax_cross_entropy(y, t).array + 0.3 * sum(
            F.softmax_cross_entropy(a, t).array for a in model.aux_logits
        )
        assert float(loss.array) == pytest.approx(float(expected), rel=1e-6)
        model.cleargrads()
        loss.backward()  # gradients reach the auxiliary heads and the stem
        assert model.aux[0].fc2.W.grad is not None and model.conv1.W.grad is not None
    with chainer.using_config("train", False):
        y = model(x)
        assert model.aux_logits == []
        assert float(model.loss(y, t).array) == pytest.approx(
            float(F.softmax_cross_entropy(y, t).array)
        )


def test_trainer_uses_the_models_loss() -> None:
    """The training pipeline wraps the net in a Classifier whose loss is the model's."""
    from chainer_nets import train

    net = g.GoogLeNet(10, g.CIFAR_STEM)
    recipe = __import__("chainer_nets.recipes", fromlist=["get_recipe"]).get_recipe("googlenet")

    class Cfg:
        dtype = "float32"

    opt = train.build_optimizer(net, recipe, Cfg(), chainer.get_device("@numpy"), 0.01)
    assert opt.target.lossfun == net.loss


def test_cifar_forward_backward() -> None:
    model = get_model("googlenet")
    x = np.random.RandomState(1).randn(2, 3, 32, 32).astype(np.float32)
    with chainer.using_config("train", True):
        y = model(x)
        loss = model.loss(y, np.array([0, 1], np.int32))
    model.cleargrads()
    loss.backward()
    assert y.shape == (2, 10) and np.isfinite(float(loss.array))
    assert all(p.grad is not None and np.isfinite(p.grad).all() for p in model.params())


def test_lrn_matches_caffe_formula() -> None:
    """Caffe: x / (1 + alpha/n * sum over 5 neighbouring channels of x^2)^beta."""
    x = np.random.RandomState(0).rand(1, 8, 2, 2).astype(np.float32) * 30
    y = g.lrn(x).array
    c = 3
    s = (x[0, c - 2 : c + 3] ** 2).sum(axis=0)
    np.testing.assert_allclose(y[0, c], x[0, c] / (1 + 1e-4 / 5 * s) ** 0.75, rtol=1e-5)


def test_recipe() -> None:
    r = get_model_info("googlenet").recipe
    rec = __import__("chainer_nets.recipes", fromlist=["get_recipe"]).get_recipe(r)
    assert (rec.momentum, rec.gamma, rec.lr) == (0.9, 0.96, 0.0015)
    assert rec.milestones == tuple(range(8, 200, 8))  # 4% less every 8 epochs
