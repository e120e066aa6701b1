"""CIFAR-10 for the papers' recipes: loading, train/validation split, augmentation.

Loading goes through Chainer's own loader, :func:`chainer.datasets.get_cifar10`,
which downloads the data once into ``$CHAINER_DATASET_ROOT`` (default
``~/.chainer/dataset``) and reads its cache afterwards. A directory named by the
user may instead hold Chainer's cache file ``cifar-10.npz`` (also under
``pfnet/chainer/cifar/``) or the official ``cifar-10-batches-py`` folder.

Images stay ``uint8`` until a batch is formed; :class:`AugmentConverter` then
pads, crops, flips and normalises the whole batch at once with the array
module of the target device (NumPy or CuPy), drawing its randomness from a
seeded generator whose state is saved in training snapshots.
"""

from __future__ import annotations

import json
import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import chainer
import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CACHE_SUBDIR = os.path.join("pfnet", "chainer", "cifar")
_NPZ = "cifar-10.npz"
#: Seed of the fixed permutation behind the validation split and training subsets.
SPLIT_SEED = 2016


class DataError(RuntimeError):
    """CIFAR-10 could not be found, downloaded or read; the message says how to fix it."""


@dataclass
class Cifar10:
    """CIFAR-10 as uint8 images (N, 3, 32, 32) and int32 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str = ""


_HOW_TO_FIX = (
    "To fix: run on a machine with internet access once (Chainer downloads and caches it), "
    "or set CHAINER_DATASET_ROOT to a folder holding pfnet/chainer/cifar/cifar-10.npz, "
    "or pass --data-dir with a folder holding cifar-10.npz or cifar-10-batches-py "
    "(see data/README.md)."
)


def _from_npz(path: Path) -> Cifar10:
    try:
        with np.load(path) as raw:
            arrays = {k: raw[k] for k in ("train_x", "train_y", "test_x", "test_y")}
    except Exception as e:  # corrupt zip, missing key, not an npz ...
        raise DataError(f"cannot read CIFAR-10 from {path}: {e}. {_HOW_TO_FIX}") from e
    return _checked(arrays, str(path))


def _from_batches(folder: Path) -> Cifar10:
    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        with open(folder / name, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        return np.asarray(d[b"data"], np.uint8), np.asarray(d[b"labels"], np.uint8)

    try:
        parts = [load(f"data_batch_{i}") for i in range(1, 6)]
        test_x, test_y = load("test_batch")
    except Exception as e:
        raise DataError(f"cannot read CIFAR-10 batches in {folder}: {e}. {_HOW_TO_FIX}") from e
    arrays = {
        "train_x": np.concatenate([p[0] for p in parts]),
        "train_y": np.concatenate([p[1] for p in parts]),
        "test_x": test_x,
        "test_y": test_y,
    }
    return _checked(arrays, str(folder))


def _checked(a: dict[str, np.ndarray], source: str) -> Cifar10:
    expect = {"train_x": (50000, 3072), "test_x": (10000, 3072)}
    for key, shape in expect.items():
        if a[key].reshape(len(a[key]), -1).shape != shape or a[key].dtype != np.uint8:
            raise DataError(
                f"{source}: {key} has shape {a[key].shape} dtype {a[key].dtype}, "
                f"expected {shape} uint8. {_HOW_TO_FIX}"
            )
    for key, n in (("train_y", 50000), ("test_y", 10000)):
        if a[key].shape != (n,) or a[key].min() < 0 or a[key].max() > 9:
            raise DataError(f"{source}: {key} is not {n} labels in 0..9. {_HOW_TO_FIX}")
    return Cifar10(
        train_x=a["train_x"].reshape(-1, 3, 32, 32),
        train_y=a["train_y"].astype(np.int32),
        test_x=a["test_x"].reshape(-1, 3, 32, 32),
        test_y=a["test_y"].astype(np.int32),
        source=source,
    )


def chainer_cache_path() -> Path:
    """Where Chainer keeps (or will keep) its CIFAR-10 cache file."""
    root = chainer.dataset.download.get_dataset_directory(_CACHE_SUBDIR, create_directory=False)
    return Path(root) / _NPZ


def load_cifar10(data_dir: str | os.PathLike | None = None) -> Cifar10:
    """Load CIFAR-10 from ``data_dir`` or through Chainer's loader (downloading if needed)."""
    if data_dir is not None:
        d = Path(data_dir)
        for candidate in (d / _NPZ, d / _CACHE_SUBDIR / _NPZ):
            if candidate.is_file():
                return _from_npz(candidate)
        for candidate in (d / "cifar-10-batches-py", d):
            if (candidate / "data_batch_1").is_file():
                return _from_batches(candidate)
        raise DataError(
            f"no CIFAR-10 in {d}: looked for {d / _NPZ}, {d / _CACHE_SUBDIR / _NPZ} and "
            f"{d / 'cifar-10-batches-py'}. {_HOW_TO_FIX}"
        )
    cache = chainer_cache_path()
    if not cache.is_file():
        try:
            chainer.datasets.get_cifar10()  # downloads and writes the cache file
        except Exception as e:
            raise DataError(
                f"CIFAR-10 is not in Chainer's cache ({cache}) and downloading it failed: "
                f"{type(e).__name__}: {e}. {_HOW_TO_FIX}"
            ) from e
    return _from_npz(cache)


def fixed_permutation(n: int, seed: int = SPLIT_SEED) -> np.ndarray:
    """A permutation of ``range(n)`` that never changes (independent of the training seed)."""
    return np.random.default_rng(seed).permutation(n)


def split_validation(data: Cifar10, val_size: int) -> tuple[tuple, tuple]:
    """(train, val) image/label pairs: ``val_size`` training images held out, same every run."""
    if not 0 < val_size < len(data.train_x):
        raise ValueError(f"validation size must be in 1..{len(data.train_x) - 1}, got {val_size}")
    perm = fixed_permutation(len(data.train_x))
    tr, va = np.sort(perm[:-val_size]), np.sort(perm[-val_size:])
    return (data.train_x[tr], data.train_y[tr]), (data.train_x[va], data.train_y[va])


def take_subset(x: np.ndarray, y: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` images of a fixed permutation (all of them if ``n`` is None)."""
    if n is None or n >= len(x):
        return x, y
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    idx = np.sort(fixed_permutation(len(x), SPLIT_SEED + 1)[:n])
    return x[idx], y[idx]


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (0..255 units) of uint8 images (N, 3, H, W)."""
    xf = x.reshape(len(x), x.shape[1], -1).astype(np.float64)
    mean = xf.mean(axis=(0, 2))
    std = np.sqrt(((xf - mean[None, :, None]) ** 2).mean(axis=(0, 2)))
    return mean.astype(np.float32), std.astype(np.float32)


class SeededOrderSampler:
    """Epoch order for :class:`chainer.iterators.SerialIterator`, reproducible across resumes.

    Each new order is a function of the seed and the previous order only; the
    iterator saves its current order in snapshots, so a resumed run draws the
    same epochs as an uninterrupted one (Chainer's default sampler keeps an
    unsaved RandomState).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, current_order: np.ndarray | None, current_position: int) -> np.ndarray:
        """Next epoch's order of example indices."""
        n = len(current_order)
        key = zlib.crc32(np.asarray(current_order, dtype=np.int64).tobytes())
        return np.random.default_rng([self.seed, key]).permutation(n)


#: How the border of a padded crop is filled: ``"mean"`` normalises first and pads with zeros,
#: so the border is the mean colour (fb.resnet.torch ``datasets/cifar10.lua`` then
#: ``transforms.lua`` RandomCrop; the stochastic-depth code's ``cifar-dataset.lua``);
#: ``"constant"`` pads the raw image with 0, a black border (about -2 std after
#: normalisation); ``"reflect"`` mirrors the image at its edge.
PAD_MODES = ("mean", "constant", "reflect")


class AugmentConverter:
    """Batch converter: uint8 images -> normalised float arrays on the device, augmented if asked.

    Training augmentation (pad-``pad`` random crop with a mean-colour, black or
    reflected border, see :data:`PAD_MODES`; horizontal flip) is done per batch
    with the device's array module, so it runs on the GPU when the model does.
    """

    def __init__(
        self,
        mean: np.ndarray,
        std: np.ndarray,
        *,
        augment: bool,
        pad: int = 4,
        pad_mode: str = "constant",
        flip: bool = True,
        seed: int = 0,
        dtype: np.dtype | str = np.float32,
    ) -> None:
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        self.mean = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
        self.augment, self.pad, self.pad_mode, self.flip = augment, pad, pad_mode, flip
        self.dtype = np.dtype(dtype)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self._device_constants: dict[str, tuple] = {}  # mean and std sent once per device

    def __call__(self, batch: list, device=None) -> tuple:
        """Stack ``(image, label)`` pairs, send them to ``device``, augment and normalise."""
        x, t = chainer.dataset.concat_examples(batch)
        if self.augment:
            n, p = len(x), self.pad
            offsets = self.rng.integers(0, 2 * p + 1, size=(n, 2)) if p else np.zeros((n, 2), int)
            flips = self.rng.random(n) < 0.5 if self.flip else np.zeros(n, bool)
        device = chainer.get_device(device if device is not None else "@numpy")
        x, t = device.send(x), device.send(t)
        xp = device.xp
        normalize_first = self.augment and self.pad_mode == "mean"
        if normalize_first:  # zero padding of normalised images: a mean-colour border
            x = self._normalize(x, device)
        if self.augment:
            mode = "constant" if normalize_first else self.pad_mode
            x = _crop_flip(x, device.send(offsets), device.send(flips), self.pad, mode, xp)
        if not normalize_first:
            x = self._normalize(x, device)
        return x.astype(self.dtype, copy=False), t

    def _normalize(self, x, device):
        key = str(device)  # the constants go to the device once, not with every batch
        if key not in self._device_constants:
            self._device_constants[key] = (device.send(self.mean), device.send(self.std))
        mean, std = self._device_constants[key]
        return (x.astype(np.float32) - mean) / std

    def rng_state(self) -> str:
        """The generator's state as a JSON string (saved in snapshots)."""
        return json.dumps(self.rng.bit_generator.state)

    def set_rng_state(self, state: str) -> None:
        """Restore a state produced by :meth:`rng_state`."""
        self.rng.bit_generator.state = json.loads(state)


def _crop_flip(x, offsets, flips, pad: int, pad_mode: str, xp):
    """Pad each image by ``pad``, cut a 32x32 window at ``offsets``, mirror where ``flips``."""
    n, c, h, w = x.shape
    if pad:
        x = xp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode=pad_mode)
    rows = offsets[:, 0:1] + xp.arange(h)[None, :]
    cols = offsets[:, 1:2] + xp.arange(w)[None, :]
    cols = xp.where(flips[:, None], cols[:, ::-1], cols)
    return x[
        xp.arange(n)[:, None, None, None],
        xp.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
