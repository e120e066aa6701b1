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
