"""The fast path's on/off switch and the record of what :func:`install` replaced.

Every kernel module asks :func:`is_enabled` before taking a call; it is the lowest layer
of the package (imports nothing from it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import chainer
import numpy as np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_ORIG: dict[str, Any] = {}


def is_enabled() -> bool:
    """Return whether the fast path is installed and switched on in this thread."""
    return bool(_ORIG) and bool(getattr(chainer.config, "cpu_fast", False))


@contextlib.contextmanager
def enabled(flag: bool = True) -> Iterator[None]:
    """Context manager that switches the fast path on or off (``chainer.config.cpu_fast``)."""
    with chainer.using_config("cpu_fast", bool(flag)):
        yield


def is_installed() -> bool:
    """Return whether :func:`install` has patched Chainer."""
    return bool(_ORIG)
