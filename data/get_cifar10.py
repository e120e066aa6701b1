"""Download CIFAR-10 through Chainer's loader (if it is not cached yet) and print where it is."""

from __future__ import annotations

import sys

import chainer_nets  # noqa: F401  (compat layer before chainer)
from chainer_nets import data


def main() -> int:
    """Make sure CIFAR-10 is available; print the cache file's path."""
    try:
        ds = data.load_cifar10()
    except data.DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"CIFAR-10: {len(ds.train_x)} training and {len(ds.test_x)} test images in {ds.source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
