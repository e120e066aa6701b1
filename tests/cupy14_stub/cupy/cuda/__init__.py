"""Stand-in for ``cupy.cuda`` (CuPy v14.2.0 ``cupy/cuda/__init__.py``): one device, id 0."""

import importlib

from cupy.cuda import memory_hook, runtime  # noqa: F401
from cupy.cuda.memory_hook import MemoryHook  # noqa: F401


class Device:
    """Stand-in for ``cupy.cuda.Device``."""

    def __init__(self, device=None) -> None:
        self.id = 0 if device is None else int(device)
        if not 0 <= self.id < runtime.getDeviceCount():
            raise RuntimeError(f"CUDA device {self.id} does not exist (stub: one device)")

    def use(self) -> "Device":
        return self

    def synchronize(self) -> None:
        pass

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *args) -> None:
        pass

    def __eq__(self, other) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __int__(self) -> int:
        return self.id


class Event:
    """Stand-in for ``cupy.cuda.Event``."""


class Stream:
    """Stand-in for ``cupy.cuda.Stream``."""


def is_available() -> bool:
    """``cupy.cuda.is_available``."""
    return runtime.getDeviceCount() > 0


def __getattr__(key):
    # CuPy 14 loads its library wrappers lazily; cuDNN is not among them.
    if key == "cublas":
        return importlib.import_module("cupy.cuda._cublas")
    raise AttributeError(f"module 'cupy.cuda' has no attribute '{key}'")
