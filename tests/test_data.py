"""CIFAR-10 loading, split, subset and the batch augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from chainer_nets import data as cdata


def _conv(**kw) -> cdata.AugmentConverter:
    return cdata.AugmentConverter(np.zeros(3), np.ones(3), **kw)


def test_crop_with_zero_padding_shifts_the_image() -> None:
    img = np.arange(3 * 32 * 32, dtype=np.uint8).reshape(1, 3, 32, 32)
    conv = _conv(augment=True, pad=4, flip=False, seed=3)
    x, _ = conv([(img[0], 0)])
    conv2 = _conv(augment=True, pad=4, flip=False, seed=3)
    oy, ox = conv2.rng.integers(0, 9, size=(1, 2))[0]
    padded = np.pad(img[0].astype(np.float32), ((0, 0), (4, 4), (4, 4)))
    np.testing.assert_array_equal(x[0], padded[:, oy : oy + 32, ox : ox + 32])


def test_reflect_padding_and_flip() -> None:
    img = np.random.RandomState(0).randint(0, 256, (3, 32, 32)).astype(np.uint8)
    conv = _conv(augment=True, pad=4, pad_mode="reflect", flip=True, seed=5)
    xs, _ = conv([(img, 1)] * 64)
    ref = _conv(augment=True, pad=4, pad_mode="reflect", flip=True, seed=5)
    offsets = ref.rng.integers(0, 9, size=(64, 2))
    flips = ref.rng.random(64) < 0.5
    padded = np.pad(img.astype(np.float32), ((0, 0), (4, 4), (4, 4)), mode="reflect")
    for x, (oy, ox), f in zip(xs, offsets, flips, strict=True):
        want = padded[:, oy : oy + 32, ox : ox + 32]
        np.testing.assert_array_equal(x, want[:, :, ::-1] if f else want)
    assert 10 < flips.sum() < 54  # both flipped and unflipped images occur


def test_normalisation_and_eval_mode() -> None:
    img = np.full((3, 32, 32), 100, np.uint8)
    conv = cdata.AugmentConverter([100, 50, 0], [1, 2, 4], augment=False)
    x, t = conv([(img, np.int32(7))])
    np.testing.assert_allclose(x[0, :, 0, 0], [0, 25, 25])
    assert x.dtype == np.float32 and t.tolist() == [7]
    assert conv.rng_state() == cdata.AugmentConverter([0] * 3, [1] * 3, augment=False).rng_state()


def test_rng_state_roundtrip() -> None:
    a = _conv(augment=True, seed=1)
    a.rng.random(10)
    b = _conv(augment=True, seed=99)
    b.set_rng_state(a.rng_state())
    assert a.rng.random() == b.rng.random()


def test_order_sampler_is_a_function_of_the_previous_order() -> None:
    s = cdata.SeededOrderSampler(0)
    o1 = s(np.arange(100), 0)
    assert sorted(o1.tolist()) == list(range(100))
    np.testing.assert_array_equal(s(o1, 0), cdata.SeededOrderSampler(0)(o1.copy(), 0))
    assert not np.array_equal(s(o1, 0), o1)
    assert not np.array_equal(cdata.SeededOrderSampler(1)(np.arange(100), 0), o1)


def test_missing_directory_gives_one_clear_message(tmp_path) -> None:
    with pytest.raises(cdata.DataError, match="no CIFAR-10 in .*cifar-10.npz"):
        cdata.load_cifar10(tmp_path)


def test_corrupt_file_gives_one_clear_message(tmp_path) -> None:
    (tmp_path / "cifar-10.npz").write_bytes(b"not a zip file")
    with pytest.raises(cdata.DataError, match="cannot read CIFAR-10"):
        cdata.load_cifar10(tmp_path)


def test_wrong_shapes_are_rejected(tmp_path) -> None:
    z = np.zeros
    np.savez(
        tmp_path / "cifar-10.npz",
        train_x=z((10, 3072), np.uint8),
        train_y=z(10, np.uint8),
        test_x=z((10, 3072), np.uint8),
        test_y=z(10, np.uint8),
    )
    with pytest.raises(cdata.DataError, match="expected"):
        cdata.load_cifar10(tmp_path)


def test_real_cifar10_split_subset_and_stats(cifar) -> None:
    assert cifar.train_x.shape == (50000, 3, 32, 32) and cifar.test_x.shape == (10000, 3, 32, 32)
    assert np.bincount(cifar.train_y).tolist() == [5000] * 10
    mean, std = cdata.channel_stats(cifar.train_x)
    np.testing.assert_allclose(mean, [125.307, 122.950, 113.865], atol=1e-2)
    np.testing.assert_allclose(std, [62.993, 62.089, 66.705], atol=1e-2)
    (tx, ty), (vx, vy) = cdata.split_validation(cifar, 5000)
    assert len(tx) == 45000 and len(vx) == 5000
    # the split is fixed and disjoint: no validation image is a training image
    (tx2, _), (vx2, _) = cdata.split_validation(cifar, 5000)
    np.testing.assert_array_equal(vx, vx2)
    train_set = {hash(row.tobytes()) for row in tx.reshape(len(tx), -1)}
    assert not any(hash(row.tobytes()) in train_set for row in vx.reshape(len(vx), -1))
    sx, sy = cdata.take_subset(tx, ty, 1000)
    assert len(sx) == 1000 and len(set(sy.tolist())) == 10


def _border_and_inside(pad_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Crop of a constant image shifted fully into the corner: (border pixel, inside pixel)."""
    mean, std = np.array([100.0, 50.0, 20.0]), np.array([2.0, 4.0, 5.0])
    conv = cdata.AugmentConverter(mean, std, augment=True, pad=4, pad_mode=pad_mode, flip=False)
    conv.rng = np.random.Generator(np.random.PCG64(0))
    img = np.full((3, 32, 32), 120, np.uint8)
    for _ in range(50):  # until a crop starts at row 0, column 0 (offset (0, 0))
        state = conv.rng_state()
        oy, ox = conv.rng.integers(0, 9, size=(1, 2))[0]
        conv.set_rng_state(state)
        x, _ = conv([(img, 0)])
        if oy == 0 and ox == 0:
            return x[0, :, 0, 0], x[0, :, 31, 31]
    raise AssertionError("no crop at offset (0, 0) in 50 draws")


def test_mean_padding_normalises_first_so_the_border_is_the_mean_colour() -> None:
    """pad_mode "mean" (fb.resnet.torch, the stochastic-depth code): the border is 0 after
    normalisation; "constant" pads the raw image with 0, so its border is -mean/std."""
    border, inside = _border_and_inside("mean")
    np.testing.assert_allclose(border, 0.0)
    np.testing.assert_allclose(inside, (120 - np.array([100.0, 50.0, 20.0])) / [2, 4, 5])
    black, inside_c = _border_and_inside("constant")
    np.testing.assert_allclose(black, -np.array([100.0, 50.0, 20.0]) / [2, 4, 5])
    np.testing.assert_allclose(inside_c, inside)


def test_mean_padding_without_augmentation_only_normalises() -> None:
    mean, std = np.array([10.0, 20.0, 30.0]), np.array([2.0, 2.0, 2.0])
    img = np.full((3, 32, 32), 40, np.uint8)
    conv = cdata.AugmentConverter(mean, std, augment=False, pad_mode="mean")
    x, _ = conv([(img, 0)])
    np.testing.assert_allclose(x[0, :, 5, 5], [15.0, 10.0, 5.0])


def test_unknown_pad_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="pad_mode must be one of"):
        _conv(augment=True, pad_mode="edge")


def test_recipes_follow_their_references_padding() -> None:
    """fb.resnet.torch (ResNet, pre-act ResNet) and the stochastic-depth code zero-pad the
    normalised images; the WRN recipe reflects. Every other padded recipe uses the mean colour
    and lists how it fills the border among its departures."""
    from chainer_nets.recipes import get_recipe, list_recipes

    # the authors' loaders of DenseNet (fb.resnet.torch's), ResNeXt (likewise) and PyramidNet
    # (fb.resnet.torch's, also for separated stochastic depth) pad normalised images with zeros
    references = ("resnet", "resnet_warmup", "preresnet", "stochastic_depth", "densenet")
    references += ("resnext", "pyramidnet", "pyramidnet_sepdrop")
    for name in references:
        assert get_recipe(name).augment.pad_mode == "mean", name
    assert get_recipe("wrn").augment.pad_mode == "reflect"
    for name in list_recipes():
        recipe = get_recipe(name)
        assert recipe.augment.pad_mode in cdata.PAD_MODES
        if name in (*references, "wrn") or recipe.augment.pad == 0:  # no crops: no border
            continue
        assert recipe.augment.pad_mode == "mean", name
        assert any("border" in d for d in recipe.departures), name
