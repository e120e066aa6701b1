"""Stand-in for ``cupyx`` (CuPy v14.2.0 ``cupyx/__init__.py``)."""

import contextlib


class DeviceSynchronized(RuntimeError):
    """Raised when a device synchronisation happens while disallowed."""


@contextlib.contextmanager
def allow_synchronize(allow):
    """``cupyx.allow_synchronize`` (nothing can synchronise in the stub)."""
    yield
