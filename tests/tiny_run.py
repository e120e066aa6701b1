"""A tiny model with a short warm-up recipe, for training tests that must be fast.

Neither is registered: :func:`install` makes the training module find them by name
(through pytest's ``monkeypatch`` in tests, undone afterwards). ``python
tests/tiny_run.py ARGS`` runs the training CLI with them, so a test can kill and
resume a real process.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

MODEL = "tiny_resnet_test"
#: 64 images at batch 16: 4 iterations an epoch, 24 iterations (6 epochs) in all;
#: warm-up ends at iteration 6 (epoch 1.5), the rate steps at 12 (epoch 3) and 18 (epoch 4.5).
ARGS = ["--model", MODEL, "--train-subset", "64", "--test-subset", "32", "--no-progress"]


def install(setattr_: Callable = setattr) -> None:
    """Make ``chainer_nets.train`` know the tiny model and its recipe."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import chainer_nets  # noqa: F401
    from chainer_nets import recipes, registry, train
    from chainer_nets.models.resnet import ResNetCifar

    tiny = dataclasses.replace(
        registry.get_model_info("resnet20"), name=MODEL, factory=ResNetCifar,
        kwargs={"n": 1, "widths": (4, 8, 8)}, recipe="tiny_warmup", paper_accuracy=None,
        paper_params=None,
    )  # fmt: skip

    def get_model_info(name: str) -> registry.ModelInfo:
        return tiny if name == MODEL else registry.get_model_info(name)

    def get_recipe(name: str) -> recipes.Recipe:
        if name != "tiny_warmup":
            return recipes.get_recipe(name)
        return dataclasses.replace(
            recipes.get_recipe("resnet_warmup"), name=name, unit="iteration", length=24,
            milestones=(12, 18), warmup_iterations=6, batch_size=16,
        )  # fmt: skip

    setattr_(train, "get_model_info", get_model_info)
    setattr_(train, "get_recipe", get_recipe)


if __name__ == "__main__":
    install()
    from chainer_nets.train import main

    sys.exit(main(sys.argv[1:]))
