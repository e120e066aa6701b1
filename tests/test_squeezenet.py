"""Paper 10 (SqueezeNet): the Fire module, Table 1's layout and count, the bypass variants, the
2016 BN variant, the CIFAR-10 adaptation and the recipes."""

from __future__ import annotations

import chainer
import chainer.functions as F
import numpy as np
import pytest

from chainer_nets import get_model, get_model_info
from chainer_nets.models import squeezenet as sq
from chainer_nets.recipes import get_recipe
from chainer_nets.registry import count_params
from chainer_nets.schedule import Schedule

# Exact counts of our implementations (all parameters: weights, biases, BN scale and shift).
EXACT = {
    "squeezenet_imagenet": 1_248_424,  # Table 1's total
    "squeezenet_bypass_imagenet": 1_248_424,
    "squeezenet_complex_bypass_imagenet": 1_589_672,
    "squeezenet": 729_034,
    "squeezenet_bypass": 729_034,
    "squeezenet_complex_bypass": 1_070_282,
    "squeezenet_bn": 735_626,
}
#: Table 1, "# parameter before pruning" per layer (weights and biases).
TABLE1_PARAMS = {
    "conv1": 14_208,
    "fire2": 11_920,
    "fire3": 12_432,
    "fire4": 45_344,
    "fire5": 49_440,
    "fire6": 104_880,
    "fire7": 111_024,
    "fire8": 188_992,
    "fire9": 197_184,
    "conv10": 513_000,
}
#: Table 1's output sizes (channels, height, width) on a 227x227 image.
TABLE1_SHAPES = {
    "conv1": (96, 111, 111),
    "maxpool1": (96, 55, 55),
    "fire2": (128, 55, 55),
    "fire3": (128, 55, 55),
    "fire4": (256, 55, 55),
    "maxpool4": (256, 27, 27),
    "fire5": (256, 27, 27),
    "fire6": (384, 27, 27),
    "fire7": (384, 27, 27),
    "fire8": (512, 27, 27),
    "maxpool8": (512, 13, 13),
    "fire9": (512, 13, 13),
    "conv10": (1000, 13, 13),
    "avgpool10": (1000,),
}


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_count(name: str) -> None:
    assert count_params(get_model(name)) == EXACT[name]


def test_imagenet_count_is_table_1_layer_by_layer() -> None:
    model = get_model("squeezenet_imagenet")
    ours = {"conv1": count_params(model.conv1), "conv10": count_params(model.conv10)}
    ours |= {n: count_params(b) for n, b in zip(model.names, model.fires, strict=True)}
    assert ours == TABLE1_PARAMS
    assert sum(TABLE1_PARAMS.values()) == count_params(model) == 1_248_424


def test_registry_pins_the_papers_count_and_marks_imagenet() -> None:
    info = get_model_info("squeezenet_imagenet")
    assert info.paper_params == "1.248424" and info.dataset == "imagenet"
    assert count_params(info.build(), info.params_counting) == 1_248_424
    assert get_model_info("squeezenet_complex_bypass_imagenet").paper_params is None
    for name in ("squeezenet", "squeezenet_bypass", "squeezenet_complex_bypass", "squeezenet_bn"):
        info = get_model_info(name)
        assert info.dataset == "cifar10" and info.paper_no == 10 and info.paper_accuracy is None
    assert get_model_info("squeezenet_bn").recipe == "squeezenet_bn"


def test_fire_output_channels_are_e1_plus_e3() -> None:
    spec = sq.FireSpec(s1=8, e1=24, e3=40)
    fire = sq.Fire(32, spec)
    y = fire(_rand(2, 32, 7, 7))
    assert y.shape == (2, 64, 7, 7) == (2, fire.out_ch, 7, 7)
    assert fire.squeeze.W.shape == (8, 32, 1, 1)
    assert fire.expand1.W.shape == (24, 8, 1, 1) and fire.expand3.W.shape == (40, 8, 3, 3)


def test_fire_computes_squeeze_then_both_expands_with_relus() -> None:
    """The output is [ReLU(E1 s) | ReLU(E3 s)] with s = ReLU(S x), recomputed by hand."""
    fire = sq.Fire(6, sq.FireSpec(3, 4, 5))
    for link in (fire.squeeze, fire.expand1, fire.expand3):  # non-zero biases, so order shows
        link.b.array[...] = _rand(*link.b.shape, seed=3)
    x = _rand(2, 6, 5, 5, seed=1)
    s = np.maximum(F.convolution_2d(x, fire.squeeze.W, fire.squeeze.b).array, 0)
    e1 = np.maximum(F.convolution_2d(s, fire.expand1.W, fire.expand1.b).array, 0)
    e3 = np.maximum(F.convolution_2d(s, fire.expand3.W, fire.expand3.b, pad=1).array, 0)
    np.testing.assert_allclose(fire(x).array, np.concatenate([e1, e3], axis=1), atol=1e-5)


def test_squeeze_ratio_and_metaparameters_give_table_1() -> None:
    """Section 5: base_e = incr_e = 128, pct3x3 = 0.5, freq = 2, SR = 0.125 give Table 1."""
    assert sq.fire_widths() == list(sq.TABLE1.values())
    for spec in sq.TABLE1.values():
        assert spec.s1 / spec.out == 0.125 and spec.e3 / spec.out == 0.5
        assert spec.s1 < spec.out  # the squeeze limits the 3x3 filters' inputs
    wider = sq.fire_widths(sr=0.75)
    assert [s.s1 for s in wider] == [96, 96, 192, 192, 288, 288, 384, 384]
    assert [s.e3 for s in sq.fire_widths(pct_3x3=0.25)][:2] == [32, 32]


def test_imagenet_output_sizes_are_table_1() -> None:
    model = get_model("squeezenet_imagenet")
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        shapes = {name: h.shape[1:] for name, h in model.stages(np.zeros((1, 3, 227, 227), "f"))}
    assert shapes == TABLE1_SHAPES
    assert list(shapes) == list(TABLE1_SHAPES)  # and in Table 1's order


def _bypass_kinds(model: sq.SqueezeNet) -> dict[str, str | None]:
    return {n: b.bypass for n, b in zip(model.names, model.fires, strict=True)}


def test_simple_bypass_only_around_fire3_5_7_9() -> None:
    model = get_model("squeezenet_bypass")
    kinds = _bypass_kinds(model)
    assert {n for n, k in kinds.items() if k} == {"fire3", "fire5", "fire7", "fire9"}
    assert set(kinds.values()) == {None, "identity"}
    assert not any(hasattr(b, "proj") for b in model.fires)
    assert set(_bypass_kinds(get_model("squeezenet")).values()) == {None}


def test_complex_bypass_adds_1x1_convs_on_the_others() -> None:
    model = get_model("squeezenet_complex_bypass")
    kinds = _bypass_kinds(model)
    assert {n for n, k in kinds.items() if k == "1x1"} == {"fire2", "fire4", "fire6", "fire8"}
    assert {n for n, k in kinds.items() if k == "identity"} == {"fire3", "fire5", "fire7", "fire9"}
    in_ch = 96
    for block in model.fires:
        if block.bypass == "1x1":
            assert block.proj.W.shape == (block.fire.out_ch, in_ch, 1, 1)
        in_ch = block.fire.out_ch
    # the projections are the only extra parameters: 96*128 + 128*256 + 256*384 + 384*512 + biases
    extra = count_params(model) - count_params(get_model("squeezenet"))
    assert extra == 96 * 128 + 128 * 256 + 256 * 384 + 384 * 512 + 128 + 256 + 384 + 512


@pytest.mark.parametrize("name", ["squeezenet_bypass", "squeezenet_complex_bypass"])
def test_bypass_blocks_add_exactly_their_shortcut(name: str) -> None:
    model = get_model(name)
    x = {96: _rand(1, 96, 4, 4), 128: _rand(1, 128, 4, 4, seed=1)}
    x |= {c: _rand(1, c, 4, 4, seed=c) for c in (256, 384, 512)}
    in_ch = 96
    with chainer.using_config("train", False):
        for block in model.fires:
            xin = x[in_ch]
            fire = block.fire(xin).array
            out = block(xin).array
            if block.bypass == "identity":
                np.testing.assert_allclose(out, fire + xin, atol=1e-5)
            elif block.bypass == "1x1":
                np.testing.assert_allclose(out, fire + block.proj(xin).array, atol=1e-5)
            else:
                np.testing.assert_array_equal(out, fire)
            in_ch = block.fire.out_ch


def test_identity_bypass_refuses_mismatched_widths() -> None:
    with pytest.raises(ValueError, match="equal widths"):
        sq.FireBlock(96, sq.TABLE1["fire2"], "identity", preact=False)


def test_bn_variant_is_the_2016_network() -> None:
    """Pre-activation Fire modules (BN-ReLU before each convolution), simple bypass, conv1 bare,
    BN-ReLU-conv10 without a ReLU after it (so scores can be negative)."""
    np.random.seed(0)
    model = get_model("squeezenet_bn")
    assert model.variant == sq.PREACT and set(_bypass_kinds(model).values()) == {None, "identity"}
    fire = model.fires[0].fire
    assert isinstance(fire, sq.PreActFire)
    assert fire.bn_squeeze.avg_mean.shape == (96,) and fire.bn_expand3.avg_mean.shape == (16,)
    assert count_params(model, "weights") == 726_048  # the 2016 table's 0.7M
    with chainer.using_config("train", False):
        x = _rand(2, 16, 5, 5, seed=2)
        blk = sq.PreActFire(16, sq.FireSpec(4, 6, 6))
        for b in (blk.bn_squeeze, blk.bn_expand1, blk.bn_expand3):
            b.avg_mean[...] = 0.3
            b.avg_var[...] = 2.0
        scale = np.float32(1 / np.sqrt(2.0 + blk.bn_squeeze.eps))
        s = blk.squeeze(np.maximum((x - np.float32(0.3)) * scale, 0)).array
        e1 = blk.expand1(np.maximum((s - np.float32(0.3)) * scale, 0)).array
        np.testing.assert_allclose(blk(x).array[:, :6], e1, atol=1e-5)
        y = model(_rand(4, 3, 32, 32))
    assert y.shape == (4, 10) and (y.array < 0).any()
    # the paper's network ends in ReLU(conv10) before the pooling: no negative score
    with chainer.using_config("train", False):
        assert (get_model("squeezenet")(_rand(4, 3, 32, 32)).array >= 0).all()


def test_cifar_shapes() -> None:
    """The one CIFAR change: 3x3/1 conv1 and no first pool, so fire2-4 run on 32x32."""
    model = get_model("squeezenet")
    assert model.conv1.W.shape == (96, 3, 3, 3)
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        shapes = {n: h.shape[1:] for n, h in model.stages(np.zeros((1, 3, 32, 32), "f"))}
    assert "maxpool1" not in shapes
    assert shapes["fire2"] == (128, 32, 32) and shapes["fire5"] == (256, 16, 16)
    assert shapes["fire9"] == (512, 8, 8) and shapes["avgpool10"] == (10,)


@pytest.mark.parametrize(
    "name", ["squeezenet", "squeezenet_bypass", "squeezenet_complex_bypass", "squeezenet_bn"]
)
def test_cifar_forward_backward(name: str) -> None:
    np.random.seed(0)
    model = get_model(name)
    with chainer.using_config("train", True):
        y = model(_rand(2, 3, 32, 32))
        loss = F.softmax_cross_entropy(y, np.array([1, 7], np.int32))
    model.cleargrads()
    loss.backward()
    assert y.shape == (2, 10) and np.isfinite(float(loss.array))
    grads = [p.grad for p in model.params()]
    assert all(g is not None and np.isfinite(g).all() for g in grads)
    assert np.abs(model.conv1.W.grad).sum() > 0


def test_dropout_only_in_training() -> None:
    model = get_model("squeezenet")
    x = _rand(2, 3, 32, 32)
    with chainer.using_config("train", False):
        a, b = model(x).array, model(x).array
    np.testing.assert_array_equal(a, b)
    with chainer.using_config("train", True):
        np.random.seed(0)
        c = model(x).array
    assert not np.allclose(a, c)


def test_recipes() -> None:
    r = get_recipe("squeezenet")
    assert (r.lr, r.momentum, r.weight_decay, r.batch_size, r.decay) == (
        0.04, 0.9, 2e-4, 512, "linear"
    )  # fmt: skip
    assert not r.augment.flip and "linearly to 0" in r.summary()
    s = Schedule.from_recipe(r, 50000 / 512)
    assert s.lr(0) == 0.04 and s.lr(s.stop // 2) == pytest.approx(0.02, rel=1e-3)
    assert 0 < s.lr(s.stop - 1) < 1e-4
    b = get_recipe("squeezenet_bn")
    assert (b.lr, b.weight_decay, b.batch_size, b.length, b.milestones, b.decay) == (
        0.1, 1e-4, 64, 300, (150, 225), "step"
    )  # fmt: skip
