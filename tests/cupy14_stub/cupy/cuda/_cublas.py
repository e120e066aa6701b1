"""Stand-in for ``cupy_backends.cuda.libs.cublas`` (reached as ``cupy.cuda.cublas``)."""
