"""Shared fixtures: CIFAR-10 availability (skip for users without it, fail in CI)."""

from __future__ import annotations

import os

import pytest

import chainer_nets  # noqa: F401  (compat layer before chainer)
from chainer_nets import data as cdata

HOW_TO_GET = (
    "CIFAR-10 is not available: run any training command once with internet access "
    "(Chainer downloads it), or set CHAINER_DATASET_ROOT; see data/README.md"
)


def cifar_available() -> bool:
    """True when Chainer's CIFAR-10 cache file exists."""
    return cdata.chainer_cache_path().is_file()


@pytest.fixture(scope="session")
def cifar() -> cdata.Cifar10:
    """The real CIFAR-10; skips without it (fails when CHAINER_NETS_REQUIRE_DATA=1, as in CI)."""
    if not cifar_available():
        if os.environ.get("CHAINER_NETS_REQUIRE_DATA") == "1":
            pytest.fail(HOW_TO_GET + " (CHAINER_NETS_REQUIRE_DATA=1)")
        pytest.skip(HOW_TO_GET)
    return cdata.load_cifar10()
