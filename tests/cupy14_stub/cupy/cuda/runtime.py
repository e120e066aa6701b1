"""Stand-in for ``cupy.cuda.runtime`` (``cupy_backends/cuda/api/runtime.pyx``): one device."""


def getDeviceCount() -> int:  # noqa: N802  (CuPy's name)
    """Number of visible devices."""
    return 1
