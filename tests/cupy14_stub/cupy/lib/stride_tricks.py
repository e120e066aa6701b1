"""Stand-in for ``cupy.lib.stride_tricks`` (CuPy v14.2.0 ``cupy/lib/stride_tricks.py``)."""


def as_strided(x, shape=None, strides=None):
    """``cupy.lib.stride_tricks.as_strided`` (not computable in the stub)."""
    raise RuntimeError("the CuPy stub cannot create arrays")
