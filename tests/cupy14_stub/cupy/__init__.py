"""Stand-in for CuPy 14.2.0 on a machine without a GPU: the names Chainer 7.8.1 touches when
``import chainer_nets`` runs and ``chainer.get_device('@cupy:0')`` is called, nothing more.

Every name here exists in CuPy v14.2.0 (source tag ``v14.2.0``):

================================================  ==========================================
name                                              defined in CuPy v14.2.0
================================================  ==========================================
``cupy.__version__``                              ``cupy/__init__.py`` (``_version``)
``cupy.ndarray``                                  ``cupy/__init__.py`` (``cupy._core``)
``cupy.ElementwiseKernel``                        ``cupy/__init__.py`` (``cupy._core``)
``cupy.fuse``                                     ``cupy/__init__.py`` (``_core.fusion.fuse``)
``cupy.memoize``, ``cupy._util.memoize``          ``cupy/_util.pyx``
``cupy._util.PerformanceWarning``                 ``cupy/_util.pyx`` (a RuntimeWarning)
``cupy.get_default_memory_pool``                  ``cupy/__init__.py``
``cupy.get_default_pinned_memory_pool``           ``cupy/__init__.py``
``cupy.cuda.Device``, ``Event``, ``Stream``       ``cupy/cuda/__init__.py``
``cupy.cuda.memory_hook.MemoryHook``              ``cupy/cuda/memory_hook.pyx``
``cupy.cuda.cublas`` (lazy, module ``__getattr__``)  ``cupy/cuda/__init__.py``
``cupy.cuda.runtime.getDeviceCount``              ``cupy_backends/cuda/api/runtime.pyx``
``cupy.cuda.is_available``                        ``cupy/cuda/__init__.py``
``cupy.lib.stride_tricks.as_strided``             ``cupy/lib/stride_tricks.py``
``cupyx``, ``cupyx.scipy.linalg``, ``.special``   ``cupyx/...`` (imported by Chainer)
``cupyx.allow_synchronize``, ``DeviceSynchronized``  ``cupyx/__init__.py`` (``_core.syncdetect``)
================================================  ==========================================

And, as in CuPy 14, there is no ``cupy.cudnn`` and no ``cupy.cuda.cudnn``: Chainer's
``import cupy.cuda.cudnn`` fails, so it runs with ``cudnn_enabled = False``.
``cupy.cuda.nccl`` is left out too (Chainer imports it inside ``try``; CuPy 14 has it).

Nothing computes: a stub array cannot be created. The tests use it to show that the
import-time surface and device selection behave as on the GPU machine.
"""

from cupy import _util, cuda, lib  # noqa: F401
from cupy._util import memoize  # noqa: F401

__version__ = "14.2.0"


class ndarray:  # noqa: N801  (CuPy's name)
    """Stand-in for ``cupy.ndarray`` (isinstance checks only)."""

    def __init__(self, *args, **kwargs) -> None:
        raise RuntimeError("the CuPy stub cannot create arrays")


class ElementwiseKernel:
    """Stand-in for ``cupy.ElementwiseKernel``: records its definition, never runs."""

    def __init__(self, in_params, out_params, operation, name="kernel", **kwargs) -> None:
        self.in_params, self.out_params = in_params, out_params
        self.operation, self.name = operation, name

    def __call__(self, *args, **kwargs):
        raise RuntimeError("the CuPy stub cannot launch kernels")


def fuse(*args, **kwargs):
    """``cupy.fuse``: usable as ``@fuse`` and ``@fuse(kernel_name=...)``; returns the function."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return args[0]
    return lambda f: f


class _MemoryPool:
    """Stand-in for CuPy's (pinned) memory pool."""

    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        pass


_pool, _pinned_pool = _MemoryPool(), _MemoryPool()


def get_default_memory_pool() -> _MemoryPool:
    """``cupy.get_default_memory_pool``."""
    return _pool


def get_default_pinned_memory_pool() -> _MemoryPool:
    """``cupy.get_default_pinned_memory_pool``."""
    return _pinned_pool
