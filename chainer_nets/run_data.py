"""The arrays one training run uses: CIFAR-10 split (training / held-out validation / test),
subsetted and checked against the run's options before anything is written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from chainer_nets.data import channel_stats, load_cifar10, split_validation, take_subset
from chainer_nets.runfolder import UsageError

if TYPE_CHECKING:
    from chainer_nets.train import TrainConfig


@dataclass
class RunData:
    """The arrays one run trains and scores on, and the normalisation of its training split."""

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray]
    mean: np.ndarray
    std: np.ndarray


def load_data(cfg: TrainConfig, batch: int) -> RunData:
    """CIFAR-10 split and subsetted as ``cfg`` asks; DataError or UsageError when it cannot be."""
    ds = load_cifar10(cfg.data_dir)
    if cfg.val_split:
        (tx, ty), val = split_validation(ds, cfg.val_split)
    else:
        (tx, ty), val = (ds.train_x, ds.train_y), None
    after = f" left after --val-split {cfg.val_split}" if cfg.val_split else ""
    if cfg.train_subset is not None and cfg.train_subset > len(tx):
        raise UsageError(
            f"--train-subset {cfg.train_subset} is more than the {len(tx)} training images{after}"
        )
    if cfg.test_subset is not None and cfg.test_subset > len(ds.test_x):
        raise UsageError(
            f"--test-subset {cfg.test_subset} is more than the {len(ds.test_x)} test images"
        )
    mean, std = channel_stats(tx)
    tx, ty = take_subset(tx, ty, cfg.train_subset)
    if batch > len(tx):
        which = "--batch-size" if cfg.batch_size else "the recipe's batch size"
        raise UsageError(
            f"{which} {batch} is larger than the {len(tx)} training images{after}: "
            "an epoch would not hold one batch"
        )
    test = take_subset(ds.test_x, ds.test_y, cfg.test_subset)
    return RunData(train=(tx, ty), val=val, test=test, mean=mean, std=std)
