"""Stand-in for ``cupy.cuda.memory_hook`` (CuPy v14.2.0 ``cupy/cuda/memory_hook.pyx``)."""


class MemoryHook:
    """Base class of CuPy memory hooks."""

    name = "MemoryHook"

    def __enter__(self):
        return self

    def __exit__(self, *args) -> None:
        pass
