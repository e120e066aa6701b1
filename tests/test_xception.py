"""Paper 20 (Xception): the separable convolution is linear between its two halves, Figure 5's
flows and shapes, the 1x1 stride-2 projections, Table 3's parameter count, CIFAR-10 training
step, and the depthwise convolutions on the CPU fast path."""

from __future__ import annotations

import chainer
import chainer.functions as F
import numpy as np
import pytest

from chainer_nets import cpu_fast, get_model, get_model_info
from chainer_nets.cpu_fast import conv_kernels
from chainer_nets.models import xception as xc
from chainer_nets.recipes import get_recipe
from chainer_nets.registry import count_params

#: Table 3 of the paper (trainable parameters of the ImageNet network, no FC layers).
TABLE_3 = 22_855_952
EXACT = {"xception_imagenet": TABLE_3, "xception": 20_827_442}
#: A miniature of the same network (same code paths) for the quick checks.
MINI = xc.Widths(stem=(8, 16), entry=(16, 24, 32), middle_repeats=2, exit=(40, 48, 56))


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_count(name: str) -> None:
    assert count_params(get_model(name)) == EXACT[name]


def test_count_from_figure_5_by_hand() -> None:
    """Table 3's figure rebuilt layer by layer from Figure 5's widths (BN: scale and shift)."""

    def conv(i: int, o: int, k: int) -> int:
        return k * k * i * o + 2 * o

    def sep(i: int, o: int) -> int:  # depthwise 3x3, pointwise 1x1, one BN after both
        return 9 * i + i * o + 2 * o

    n = conv(3, 32, 3) + conv(32, 64, 3)
    for i, o in ((64, 128), (128, 256), (256, 728)):
        n += sep(i, o) + sep(o, o) + conv(i, o, 1)
    n += 8 * 3 * sep(728, 728)
    n += sep(728, 728) + sep(728, 1024) + conv(728, 1024, 1)
    n += sep(1024, 1536) + sep(1536, 2048) + 2048 * 1000 + 1000
    assert n == TABLE_3
    assert get_model_info("xception_imagenet").dataset == "imagenet"


def test_separable_conv_is_linear_between_depthwise_and_pointwise() -> None:
    """No activation between the halves: Sep is linear (a ReLU or ELU there breaks this) and
    equals the pointwise convolution of the depthwise one, computed here by hand."""
    rng = np.random.default_rng(0)
    sep = xc.SeparableConv2D(6, 5)
    x = rng.standard_normal((2, 6, 7, 7)).astype(np.float32)
    y = sep(x).array
    np.testing.assert_allclose(sep(-2.0 * x).array, -2.0 * y, rtol=1e-5, atol=1e-5)
    # by hand: every channel filtered on its own, then a 1x1 mixing, no bias anywhere
    dw = sep.depthwise.W.array[:, 0]  # (C, 3, 3)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    d = sum(
        dw[None, :, i, j, None, None] * xp[:, :, i : i + 7, j : j + 7]
        for i in range(3)
        for j in range(3)
    )
    expected = np.einsum("oc,nchw->nohw", sep.pointwise.W.array[:, :, 0, 0], d)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    assert sep.depthwise.b is None and sep.pointwise.b is None
    assert sep.depthwise.W.shape == (6, 1, 3, 3) and sep.depthwise.groups == 6
    for inner in ("relu", "elu"):  # the test above would catch an activation in between
        bad = xc.SeparableConv2D(6, 5, inner=inner)
        bad.copyparams(sep)
        assert not np.allclose(bad(-2.0 * x).array, -2.0 * bad(x).array, atol=1e-3)


def test_separable_conv_graph_holds_only_the_two_convolutions() -> None:
    """The function nodes of one separable convolution: two convolutions, nothing else."""
    names: list[str] = []

    class Record(chainer.FunctionHook):
        def forward_preprocess(self, function, in_data) -> None:
            names.append(type(function).__name__)

    x = np.ones((1, 4, 5, 5), np.float32)
    with Record():
        xc.SeparableConv2D(4, 3)(x)
    assert len(names) == 2 and all("Convolution2D" in n for n in names), names


def test_depthwise_filters_one_channel_each() -> None:
    sep = xc.SeparableConv2D(3, 2)
    x = np.zeros((1, 3, 5, 5), np.float32)
    x[0, 1, 2, 2] = 1.0
    d = sep.depthwise(x).array
    assert np.abs(d[0, [0, 2]]).max() == 0.0 and np.abs(d[0, 1]).max() > 0.0


def _record_outputs(model: xc.Xception, x: np.ndarray) -> dict[str, tuple]:
    shapes = {}
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        h = F.relu(model.bn2(model.conv2(F.relu(model.bn1(model.conv1(x))))))
        shapes["stem"] = h.shape[1:]
        for i, module in enumerate(model.entry):
            h = module(h)
            shapes[f"entry{i + 1}"] = h.shape[1:]
        h = model.middle_flow(h)
        shapes["middle"] = h.shape[1:]
        shapes["exit_module"] = model.exit_module(h).shape[1:]
        shapes["features"] = model.exit_flow(h).shape[1:]
        shapes["logits"] = model(x).shape[1:]
    return shapes


def test_imagenet_flow_shapes() -> None:
    """Figure 5 on 299x299: entry flow ends at 19x19x728, middle keeps it, exit 10x10x1024."""
    model = get_model("xception_imagenet")
    shapes = _record_outputs(model, np.zeros((1, 3, 299, 299), np.float32))
    assert shapes == {
        "stem": (64, 147, 147),
        "entry1": (128, 74, 74),
        "entry2": (256, 37, 37),
        "entry3": (728, 19, 19),
        "middle": (728, 19, 19),
        "exit_module": (1024, 10, 10),
        "features": (2048,),
        "logits": (1000,),
    }
    assert len(model.middle) == 8 and all(len(m.seps) == 3 for m in model.middle)


def test_cifar_layout_is_the_only_change() -> None:
    """CIFAR-10: 32x32 through the stem and first module, then 16, 8 (middle), 4; the same
    layers as the ImageNet network apart from the classifier's outputs."""
    cifar = xc.Xception(10, xc.CIFAR_LAYOUT, MINI)
    shapes = _record_outputs(cifar, np.zeros((1, 3, 32, 32), np.float32))
    assert shapes["stem"] == (16, 32, 32) and shapes["entry1"] == (16, 32, 32)
    assert shapes["entry2"] == (24, 16, 16) and shapes["middle"] == (32, 8, 8)
    assert shapes["exit_module"] == (40, 4, 4) and shapes["logits"] == (10,)
    full = {n: p.shape for n, p in get_model("xception").namedparams() if "fc" not in n}
    imnet = {n: p.shape for n, p in get_model("xception_imagenet").namedparams() if "fc" not in n}
    assert full == imnet


def test_entry_module_adds_a_strided_1x1_projection() -> None:
    """y - pool(branch(x)) is BN of a 1x1 stride-2 convolution of x (every other pixel)."""
    rng = np.random.default_rng(1)
    module = xc.EntryModule(4, 6)
    module.shortcut_bn.avg_mean[...] = rng.uniform(-1, 1, 6)
    module.shortcut_bn.avg_var[...] = rng.uniform(0.5, 2, 6)
    module.shortcut_bn.gamma.array[...] = rng.uniform(0.5, 2, 6)
    x = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
    assert module.shortcut.W.shape == (6, 4, 1, 1) and module.shortcut.stride == (2, 2)
    with chainer.using_config("train", False):
        y = module(x).array
        branch = xc.max_pool_same(module.sep2(module.sep1(x))).array
    bn = module.shortcut_bn
    proj = np.einsum("oc,nchw->nohw", module.shortcut.W.array[:, :, 0, 0], x[:, :, ::2, ::2])
    scale = bn.gamma.array / np.sqrt(bn.avg_var + bn.eps)
    expected = (proj - bn.avg_mean[:, None, None]) * scale[:, None, None] + bn.beta.array[
        :, None, None
    ]
    assert y.shape == (2, 6, 5, 5)
    np.testing.assert_allclose(y - branch, expected, rtol=1e-4, atol=1e-4)


def test_relu_placement_and_identity_shortcuts() -> None:
    """The first entry module and the two last separable convolutions start without ReLU;
    every middle module adds its input unchanged."""
    model = xc.Xception(10, xc.CIFAR_LAYOUT, MINI)
    assert [m.sep1.pre_relu for m in model.entry] == [False, True, True]
    assert all(m.sep2.pre_relu for m in model.entry) and model.exit_module.sep1.pre_relu
    assert not model.sep3.pre_relu and not model.sep4.pre_relu
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 32, 4, 4)).astype(np.float32)
    module = model.middle[0]
    with chainer.using_config("train", False):
        h = x
        for sep in module.seps:
            h = sep(h)
        np.testing.assert_allclose(module(x).array, x + h.array, rtol=1e-5, atol=1e-5)


def test_cifar_forward_backward() -> None:
    """The registered CIFAR-10 network: one training step's gradients reach every parameter."""
    np.random.seed(0)
    model = get_model("xception")
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    t = np.array([1, 7], np.int32)
    y = model(x)
    assert y.shape == (2, 10)
    loss = F.softmax_cross_entropy(y, t)
    model.cleargrads()  # Chainer fills fresh gradients with NaN until cleared
    loss.backward()
    for name, p in model.namedparams():
        assert p.grad is not None and np.isfinite(p.grad).all(), name
    assert np.abs(model.entry[0].sep1.sep.depthwise.W.grad).max() > 0


def test_depthwise_convolutions_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every depthwise convolution of a training step runs cpu_fast's depthwise kernels
    (forward and backward), and the step's results equal Chainer's own path."""
    calls = {"fwd": 0, "bwd": 0}
    fwd, bwd = conv_kernels._depthwise_forward, conv_kernels._depthwise_backward

    def count_fwd(*args, **kwargs):
        calls["fwd"] += 1
        return fwd(*args, **kwargs)

    def count_bwd(*args, **kwargs):
        calls["bwd"] += 1
        return bwd(*args, **kwargs)

    monkeypatch.setattr(conv_kernels, "_depthwise_forward", count_fwd)
    monkeypatch.setattr(conv_kernels, "_depthwise_backward", count_bwd)
    cpu_fast.install()
    nodes: list[int] = []

    class Record(chainer.FunctionHook):
        def forward_preprocess(self, function, in_data) -> None:
            if isinstance(function, cpu_fast.FastConvolution2D) and function.groups > 1:
                nodes.append(function.groups)

    np.random.seed(0)
    model = xc.Xception(10, xc.CIFAR_LAYOUT, MINI)
    n_sep = sum(1 for link in model.links() if isinstance(link, xc.SeparableConv2D))
    x = np.random.default_rng(4).standard_normal((4, 3, 32, 32)).astype(np.float32)
    t = np.arange(4, dtype=np.int32)
    grads = {}
    for fast in (True, False):
        before = dict(calls)
        np.random.seed(1)  # the same dropout mask on both paths
        with cpu_fast.enabled(fast), Record():
            model.cleargrads()
            loss = F.softmax_cross_entropy(model(x), t)
            loss.backward()
        grads[fast] = (float(loss.array), {n: p.grad.copy() for n, p in model.namedparams()})
        if fast:
            assert calls["fwd"] - before["fwd"] >= n_sep  # split over worker threads: >= 1 each
            assert calls["bwd"] - before["bwd"] >= n_sep
            sep_widths = [
                link.depthwise.W.shape[0]
                for link in model.links()
                if isinstance(link, xc.SeparableConv2D)
            ]
            assert sorted(nodes) == sorted(sep_widths)  # every depthwise node, groups == C
        else:
            assert calls == before  # switched off: Chainer's own grouped convolution
    assert grads[True][0] == pytest.approx(grads[False][0], rel=1e-4)
    for name, g in grads[False][1].items():
        np.testing.assert_allclose(grads[True][1][name], g, rtol=2e-3, atol=2e-4, err_msg=name)


@pytest.mark.parametrize("c,size", [(728, 8), (2048, 4)])
def test_fast_depthwise_matches_chainer_at_xception_widths(c: int, size: int) -> None:
    """Depthwise 3x3, stride 1, padding 1 at Figure 5's widths: fast path == Chainer's."""
    cpu_fast.install()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, c, size, size)).astype(np.float32)
    w = rng.standard_normal((c, 1, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((3, c, size, size)).astype(np.float32)
    out = {}
    for fast in (True, False):
        xv, wv = chainer.Variable(x), chainer.Variable(w)
        with cpu_fast.enabled(fast):
            y = F.convolution_2d(xv, wv, pad=1, groups=c)
            assert isinstance(y.creator, cpu_fast.FastConvolution2D) == fast
            y.grad = gy
            y.backward()
        out[fast] = (y.array, xv.grad, wv.grad)
    for a, b in zip(out[True], out[False], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_recipe_is_the_papers() -> None:
    r = get_recipe("xception")
    assert (r.optimizer, r.momentum, r.lr, r.weight_decay) == ("momentum_sgd", 0.9, 0.045, 1e-5)
    assert r.gamma == 0.94 and r.unit == "epoch"
    assert list(r.milestones) == list(range(2, r.length, 2))  # x0.94 every 2 epochs
    assert get_model_info("xception").recipe == "xception"
    assert xc.DROPOUT == 0.5 and get_model("xception").dropout == 0.5
