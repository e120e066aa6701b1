"""Paper 12, Resnet in Resnet: the two streams' equations, the outer shortcut, the 18-layer net."""

from __future__ import annotations

import chainer
import numpy as np

from chainer_nets import get_model, get_model_info
from chainer_nets.blocks import zero_pad_shortcut
from chainer_nets.models.rir import DualStreamLayer, ResNetInResNet, RiRBlock
from chainer_nets.registry import count_params


def _conv3x3(x: np.ndarray, w: np.ndarray, stride: int = 1) -> np.ndarray:
    """Reference 3x3 convolution, zero padding 1 (independent of Chainer)."""
    n, c, hgt, wid = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], hgt, wid), np.float64)
    for i in range(3):
        for j in range(3):
            out += np.einsum("oc,nchw->nohw", w[:, :, i, j], xp[:, :, i : i + hgt, j : j + wid])
    return out[:, :, ::stride, ::stride]


def _bn_test(z: np.ndarray, bn) -> np.ndarray:
    """Batch normalization in test mode with the link's running statistics."""
    g, b = bn.gamma.array[None, :, None, None], bn.beta.array[None, :, None, None]
    m, v = bn.avg_mean[None, :, None, None], bn.avg_var[None, :, None, None]
    return g * (z - m) / np.sqrt(v + bn.eps) + b


def _randomise(link: chainer.Link, seed: int) -> None:
    rng = np.random.RandomState(seed)
    for p in link.params():
        p.array[...] = rng.randn(*p.shape).astype(np.float32) * 0.5
    for k in link.links():
        if isinstance(k, chainer.links.BatchNormalization):
            k.avg_mean[...] = rng.randn(*k.avg_mean.shape).astype(np.float32) * 0.1
            k.avg_var[...] = rng.rand(*k.avg_var.shape).astype(np.float32) + 0.5


def test_exact_parameter_count_and_2016_figure() -> None:
    info = get_model_info("rir_wide18")
    model = get_model("rir_wide18")
    assert count_params(model, "weights") == 9_462_048
    assert count_params(model) == 9_469_930
    assert info.params_counting == "weights" and info.paper_params == "9.5"
    assert round(count_params(model, "weights") / 1e6, 1) == 9.5
    assert info.paper_accuracy == 94.99


def test_eighteen_layers_96_192_384_filters() -> None:
    """Stem + 8 RiR blocks x 2 dual-stream layers + classifier = 18 layers."""
    model = get_model("rir_wide18")
    layers = [k for k in model.links() if isinstance(k, DualStreamLayer)]
    blocks = [k for k in model.links() if isinstance(k, RiRBlock)]
    assert len(layers) == 16 and len(blocks) == 8
    assert [2 * b.out_ch for b in blocks] == [96, 96, 192, 192, 192, 384, 384, 384]
    assert model.head.fc.W.shape == (10, 384)


def test_dual_stream_equations_against_manual_computation() -> None:
    """r' = ReLU(BN(W_rr*r + W_tr*t + r)); t' = ReLU(BN(W_rt*r + W_tt*t))."""
    layer = DualStreamLayer(2, 2)
    _randomise(layer, 0)
    rng = np.random.RandomState(1)
    r = rng.randn(2, 2, 5, 5).astype(np.float32)
    t = rng.randn(2, 2, 5, 5).astype(np.float32)
    w = {k: getattr(layer, k).W.array for k in ("w_rr", "w_tr", "w_rt", "w_tt")}
    r_exp = np.maximum(_bn_test(_conv3x3(r, w["w_rr"]) + _conv3x3(t, w["w_tr"]) + r, layer.bn_r), 0)
    t_exp = np.maximum(_bn_test(_conv3x3(r, w["w_rt"]) + _conv3x3(t, w["w_tt"]), layer.bn_t), 0)
    with chainer.using_config("train", False):
        r_out, t_out = layer(r, t)
    np.testing.assert_allclose(r_out.array, r_exp, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(t_out.array, t_exp, rtol=1e-4, atol=1e-4)


def test_dual_stream_shortcut_grows_width_and_strides() -> None:
    """Where the width doubles and stride is 2, the residual shortcut is sub-sampled and zero-padded."""
    layer = DualStreamLayer(2, 4, stride=2)
    _randomise(layer, 2)
    rng = np.random.RandomState(3)
    r = rng.randn(1, 2, 6, 6).astype(np.float32)
    t = rng.randn(1, 2, 6, 6).astype(np.float32)
    pad = np.concatenate([r[:, :, ::2, ::2], np.zeros((1, 2, 3, 3), np.float32)], axis=1)
    z = _conv3x3(r, layer.w_rr.W.array, 2) + _conv3x3(t, layer.w_tr.W.array, 2) + pad
    with chainer.using_config("train", False):
        r_out, _ = layer(r, t)
    np.testing.assert_allclose(r_out.array, np.maximum(_bn_test(z, layer.bn_r), 0), atol=1e-4)


def test_outer_shortcut_of_the_rir_block() -> None:
    """Block output: (r'' + s(r), t'') where (r'', t'') are its two inner layers."""
    for in_ch, out_ch, stride in [(2, 2, 1), (2, 4, 2)]:
        block = RiRBlock(in_ch, out_ch, stride)
        _randomise(block, 4)
        rng = np.random.RandomState(5)
        r = rng.randn(2, in_ch, 6, 6).astype(np.float32)
        t = rng.randn(2, in_ch, 6, 6).astype(np.float32)
        with chainer.using_config("train", False):
            h_r, h_t = r, t
            for layer in block.layers:
                h_r, h_t = layer(h_r, h_t)
            r_out, t_out = block(r, t)
        shortcut = zero_pad_shortcut(chainer.Variable(r), out_ch, stride).array
        assert np.abs(shortcut).sum() > 0
        np.testing.assert_allclose(r_out.array, h_r.array + shortcut, atol=1e-5)
        np.testing.assert_allclose(t_out.array, h_t.array, atol=1e-6)  # no outer shortcut on t


def test_small_rir_forward_and_learns() -> None:
    model = ResNetInResNet(widths=(4, 8, 8), blocks=(1, 1, 1))
    rng = np.random.RandomState(6)
    x = rng.randn(4, 3, 16, 16).astype(np.float32)
    y = np.array([0, 1, 2, 3], np.int32)
    opt = chainer.optimizers.MomentumSGD(lr=0.05)
    opt.setup(model)
    losses = []
    for _ in range(15):
        loss = chainer.functions.softmax_cross_entropy(model(x), y)
        model.cleargrads()
        loss.backward()
        opt.update()
        losses.append(float(loss.array))
    assert losses[-1] < 0.5 * losses[0]
    with chainer.using_config("train", False):
        assert model(x).shape == (4, 10)
