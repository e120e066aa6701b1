"""Stand-in for ``cupy._util`` (CuPy v14.2.0 ``cupy/_util.pyx``)."""

import functools


class PerformanceWarning(RuntimeWarning):
    """Warning on a performance issue (as in CuPy)."""


def memoize(for_each_device=False):
    """``cupy.memoize``: caches by the arguments (per device in CuPy; one device here)."""

    def decorator(f):
        return functools.lru_cache(maxsize=None)(f)

    return decorator
