"""Paper 7, highway networks: the gate, its negative bias, carry behaviour, the 19-layer net."""

from __future__ import annotations

import chainer
import chainer.links as L
import numpy as np
import pytest

from chainer_nets import get_model, get_model_info
from chainer_nets.models.highway import GATE_BIAS, HighwayConv, HighwayFitNet
from chainer_nets.registry import count_params


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _layer_1x1(channels: int = 3, seed: int = 0) -> HighwayConv:
    """A 1x1 highway layer with random weights and biases (so a manual check is a matmul)."""
    rng = np.random.RandomState(seed)
    layer = HighwayConv(channels, ksize=1)
    for link in (layer.h, layer.t):
        link.W.array[...] = rng.randn(*link.W.shape).astype(np.float32)
        link.b.array[...] = rng.randn(*link.b.shape).astype(np.float32)
    return layer


def test_exact_parameter_count_and_paper_figure() -> None:
    info = get_model_info("highway_fitnet19")
    model = get_model("highway_fitnet19")
    assert count_params(model) == 2_256_838
    assert count_params(model, "weights") == 2_254_152
    assert round(count_params(model) / 1e6, 1) == float(info.paper_params) == 2.3
    assert info.paper_accuracy == 92.46


def test_nineteen_weighted_layers() -> None:
    """3 plain convs + 14 highway layers (H and T count as one layer) + 1x1 conv + FC."""
    model = HighwayFitNet()
    n_w = sum(1 for name, _ in model.namedparams() if name.endswith("/W"))
    n_gates = sum(1 for name, _ in model.namedparams() if name.endswith("/t/W"))
    assert n_gates == 14 and n_w - n_gates == 19


def test_gate_formula_against_manual_computation() -> None:
    """y = H(x) T(x) + x (1 - T(x)), H = ReLU(W_H x + b_H), T = sigmoid(W_T x + b_T)."""
    layer = _layer_1x1()
    x = np.random.RandomState(1).randn(2, 3, 4, 4).astype(np.float32)
    wh, bh = layer.h.W.array[:, :, 0, 0], layer.h.b.array
    wt, bt = layer.t.W.array[:, :, 0, 0], layer.t.b.array
    h = np.maximum(np.einsum("oc,nchw->nohw", wh, x) + bh[None, :, None, None], 0)
    t = _sigmoid(np.einsum("oc,nchw->nohw", wt, x) + bt[None, :, None, None])
    expected = h * t + x * (1 - t)
    np.testing.assert_allclose(layer(x).array, expected, rtol=1e-5, atol=1e-5)


def test_transform_gate_bias_is_initialised_negative() -> None:
    model = get_model("highway_fitnet19")
    layers = [k for k in model.links() if isinstance(k, HighwayConv)]
    assert len(layers) == 14
    assert GATE_BIAS < 0
    for layer in layers:
        assert np.all(layer.t.b.array == GATE_BIAS)  # transform gate: negative
        assert np.all(layer.h.b.array == 0)  # block state: zero
    # so at initialisation gates lean towards carrying: T(x) < 0.5 on average
    x = np.random.RandomState(0).randn(2, 32, 8, 8).astype(np.float32)
    assert float(layers[0].transform_gate(x).array.mean()) < 0.5


def test_carry_behaviour_when_gate_closes_and_opens() -> None:
    """T -> 0 passes x through unchanged; T -> 1 gives the plain layer H(x)."""
    x = np.random.RandomState(2).randn(2, 3, 4, 4).astype(np.float32)
    closed = _layer_1x1()
    closed.t.W.array[...] = 0
    closed.t.b.array[...] = -60.0
    np.testing.assert_allclose(closed(x).array, x, atol=1e-6)
    opened = _layer_1x1()
    opened.t.W.array[...] = 0
    opened.t.b.array[...] = 60.0
    np.testing.assert_allclose(opened(x).array, np.maximum(opened.h(x).array, 0), atol=1e-6)


def test_same_gate_as_chainer_links_highway() -> None:
    """On 1x1 maps a 1x1 conv highway layer is Chainer's fully connected L.Highway."""
    fc = L.Highway(3)  # y = relu(W_H x + b_H) * sigmoid(W_T x + b_T) + x * (1 - sigmoid(...))
    conv = HighwayConv(3, ksize=1)
    conv.h.W.array[...] = fc.plain.W.array[:, :, None, None]
    conv.h.b.array[...] = fc.plain.b.array
    conv.t.W.array[...] = fc.transform.W.array[:, :, None, None]
    conv.t.b.array[...] = fc.transform.b.array
    x = np.random.RandomState(3).randn(4, 3).astype(np.float32)
    np.testing.assert_allclose(
        conv(x[:, :, None, None]).array[:, :, 0, 0], fc(x).array, rtol=1e-5, atol=1e-6
    )


def test_dropout_only_in_training_and_seedable() -> None:
    model = HighwayFitNet(widths=(4, 6, 8), depths=(1, 1, 1), head_ch=8)
    x = np.random.RandomState(4).randn(2, 3, 16, 16).astype(np.float32)
    with chainer.using_config("train", False):
        a, b = model(x).array, model(x).array
    np.testing.assert_array_equal(a, b)
    with chainer.using_config("train", True):
        np.random.seed(0)
        c = model(x).array
        np.random.seed(0)
        d = model(x).array
        e = model(x).array
    np.testing.assert_array_equal(c, d)
    assert not np.allclose(c, a) and not np.allclose(d, e)


def test_small_net_learns_a_batch() -> None:
    model = HighwayFitNet(widths=(8, 8, 8), depths=(1, 1, 1), head_ch=8, dropout=0.0)
    opt = chainer.optimizers.Adam(alpha=0.01)
    opt.setup(model)
    rng = np.random.RandomState(5)
    x = rng.randn(4, 3, 16, 16).astype(np.float32)
    y = np.array([0, 1, 2, 3], np.int32)
    losses = []
    for _ in range(30):
        loss = chainer.functions.softmax_cross_entropy(model(x), y)
        model.cleargrads()
        loss.backward()
        opt.update()
        losses.append(float(loss.array))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("shape", [(2, 3, 32, 32)])
def test_registered_model_output_shape(shape: tuple) -> None:
    model = HighwayFitNet(widths=(4, 6, 8), depths=(4, 5, 5), head_ch=10)
    with chainer.using_config("train", False):
        assert model(np.zeros(shape, np.float32)).shape == (2, 10)


def test_initialisation_as_the_authors_ran_it() -> None:
    """The fork's "xavier" is N(0, 2/fan-in) (H and T alike); the first conv's "gaussian" filler
    sets ``value``, not ``std``, so its std is Caffe's default 1; the classifier has std 0.05."""
    np.random.seed(0)
    model = HighwayFitNet()
    first = model.stages[0].plain.W.array  # 3 -> 32, 3x3
    assert abs(first.std() - 1.0) < 0.05
    for conv, fan_in in [
        (model.stages[1].plain, 32 * 9),
        (model.stages[2].layers[0].h, 128 * 9),
        (model.stages[2].layers[0].t, 128 * 9),
        (model.conv_head, 128),
    ]:
        std = np.sqrt(2 / fan_in)
        assert abs(conv.W.array.std() - std) < 0.05 * std
        assert abs(conv.W.array.std() - np.sqrt(1 / fan_in)) > 0.25 * std  # not LeCun
    assert abs(model.fc.W.array.std() - 0.05) < 0.01


def test_last_layer_has_ten_outputs_after_a_100_channel_1x1_conv() -> None:
    """Commit 246c720 of the authors' repository set the last layer to 10 outputs."""
    model = HighwayFitNet()
    assert model.conv_head.W.shape[0] == 100 and model.fc.W.shape == (10, 100)
