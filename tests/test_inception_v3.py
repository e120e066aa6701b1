"""Paper 5 (Inception-v3): exact counts, factorised convolutions, grid reductions, the BN
auxiliary head, label smoothing against a hand computation."""

from __future__ import annotations

import math

import chainer
import chainer.functions as F
import numpy as np
import pytest

from chainer_nets import get_model, get_model_info
from chainer_nets.models import inception_v3 as v3
from chainer_nets.recipes import get_recipe
from chainer_nets.registry import count_params

EXACT = {"inception_v3_imagenet": 27_161_264, "inception_v3": 23_486_708}
# The reference definition without the auxiliary head: Keras reports 23,851,784 parameters,
# counting BN shift, moving mean and moving variance (no BN scale); ours count scale and shift.
KERAS_TOTAL, BN_CHANNELS = 23_851_784, 17_216


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_count(name: str) -> None:
    assert count_params(get_model(name)) == EXACT[name]


def test_imagenet_count_equals_reference_definition() -> None:
    model = get_model("inception_v3_imagenet")
    bn_channels = sum(p.size for n, p in model.namedparams() if n.endswith("gamma"))
    aux = count_params(model.aux)
    aux_bn = sum(p.size for n, p in model.aux.namedparams() if n.endswith("gamma"))
    assert bn_channels - aux_bn == BN_CHANNELS
    # Keras: weights + 3 per BN channel (shift, mean, variance); ours: weights + 2 per channel
    assert count_params(model) - aux == KERAS_TOTAL - BN_CHANNELS
    assert aux == 768 * 128 + 128 * 2 + 128 * 768 * 25 + 768 * 2 + 768 * 1000 + 1000
    assert count_params(model) < 25e6 + aux  # "less than 25 million parameters" (main body)
    assert get_model_info("inception_v3_imagenet").dataset == "imagenet"


def test_block_widths_and_grid_sizes() -> None:
    """35x35x288 after the A modules, 17x17x768, 8x8x1280, 8x8x2048 (Table 1 outline)."""
    model = get_model("inception_v3_imagenet")
    x = np.zeros((1, 3, 299, 299), np.float32)
    shapes = []
    with chainer.using_config("train", False):
        h = model.stem(x)
        assert h.shape == (1, 192, 35, 35)
        for block in model.blocks:
            h = block(h)
            shapes.append(h.shape[1:])
            assert h.shape[1] == block.out_ch
    assert shapes == [(256, 35, 35), (288, 35, 35), (288, 35, 35), (768, 17, 17)] + [
        (768, 17, 17)
    ] * 4 + [(1280, 8, 8), (2048, 8, 8), (2048, 8, 8)]


def test_factorised_convolutions() -> None:
    """17x17 modules use only 1x7 / 7x1 (and 1x1) kernels; 8x8 modules split 1x3 / 3x1."""
    model = v3.InceptionV3(10, v3.CIFAR_STEM)
    for block in model.blocks[4:8]:
        kernels = sorted({link.conv.W.shape[2:] for link in block.children()})
        assert kernels == [(1, 1), (1, 7), (7, 1)]
    c = model.blocks[9]
    assert (c.e_a.conv.W.shape[2:], c.e_b.conv.W.shape[2:]) == ((1, 3), (3, 1))
    # one 7x7 of c->c channels costs 49 c^2 weights; its factorisation 2 * 7 c^2
    b = model.blocks[4]
    assert b.s2.conv.W.size + b.d2.conv.W.size == 2 * 7 * 128 * 128


def test_label_smoothing_against_hand_computation() -> None:
    y = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], np.float32)
    t = np.array([0, 1], np.int32)
    eps, k = 0.1, 3
    expected = 0.0
    for row, label in zip(y.tolist(), t.tolist(), strict=True):
        z = sum(math.exp(v) for v in row)
        logp = [v - math.log(z) for v in row]
        q = [(1 - eps) * (j == label) + eps / k for j in range(k)]
        expected += -sum(qj * lj for qj, lj in zip(q, logp, strict=True))
    expected /= 2
    got = float(v3.label_smoothing_cross_entropy(y, t, eps).array)
    assert got == pytest.approx(expected, rel=1e-6)
    assert float(v3.label_smoothing_cross_entropy(y, t, 0.0).array) == pytest.approx(
        float(F.softmax_cross_entropy(y, t).array), rel=1e-6
    )


def test_aux_head_training_only_and_loss() -> None:
    np.random.seed(0)
    model = get_model("inception_v3")
    x = np.random.RandomState(0).randn(2, 3, 32, 32).astype(np.float32)
    t = np.array([3, 7], np.int32)
    with chainer.using_config("train", True):
        y = model(x)
        (aux,) = model.aux_logits
        loss = model.loss(y, t)
        ls = v3.label_smoothing_cross_entropy
        expected = ls(y, t, 0.1).array + 0.4 * ls(aux, t, 0.1).array
        assert float(loss.array) == pytest.approx(float(expected), rel=1e-6)
        model.cleargrads()
        loss.backward()
    assert all(p.grad is not None and np.isfinite(p.grad).all() for p in model.params())
    assert any(n.startswith("/aux/conv1/bn") for n, _ in model.namedparams())  # BN aux head
    with chainer.using_config("train", False):
        model(x[:1])
        assert model.aux_logits == []


def test_gradient_clipping_hook() -> None:
    """The model's optimizer hook rescales the global gradient norm to 2.0 before a step."""
    model = v3.InceptionV3(10, v3.CIFAR_STEM, aux=False)
    opt = chainer.optimizers.MomentumSGD(lr=0.01)
    opt.setup(model)
    model.configure_optimizer(opt)
    for p in model.params():
        p.grad = np.ones_like(p.array)
    opt.update()
    norm = math.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in model.params()))
    assert norm == pytest.approx(2.0, rel=1e-4)


def test_recipe() -> None:
    r = get_recipe(get_model_info("inception_v3").recipe)
    assert (r.lr, r.gamma, r.length) == (0.045, 0.94, 100)
    assert r.milestones == tuple(range(2, 100, 2))
