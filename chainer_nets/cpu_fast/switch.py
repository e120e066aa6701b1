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
    """Return whether the fast path is installed, switched on and not recording a static graph.

    While Chainer records a ``@static_graph`` schedule (``chainer.config.schedule_func`` is
    set), every fast-path entry steps aside: the schedule then holds Chainer's own
    convolution, whose backward it can replay. (The fast convolution's backward builds its
    gradients outside ``FunctionNode.apply``, which the scheduler cannot track.)
    """
    return (
        bool(_ORIG)
        and bool(getattr(chainer.config, "cpu_fast", False))
        and getattr(chainer.config, "schedule_func", None) is None
    )


@contextlib.contextmanager
def enabled(flag: bool = True) -> Iterator[None]:
    """Context manager that switches the fast path on or off (``chainer.config.cpu_fast``)."""
    with chainer.using_config("cpu_fast", bool(flag)):
        yield


def is_installed() -> bool:
    """Return whether :func:`install` has patched Chainer."""
    return bool(_ORIG)
