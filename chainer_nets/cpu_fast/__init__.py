"""A faster NumPy (CPU) path for Chainer's 2-D convolution and batch normalization.

Chainer 7's CPU convolution builds an ``(N, C, kh, kw, Ho, Wo)`` im2col buffer and
contracts it with ``numpy.tensordot``, which silently copies the buffer again to
make it 2-D; backward does the same twice more plus a ``col2im``. Most of a
training step is spent in those copies, not in the matrix products.

This module keeps the NCHW *shape* that every Chainer function expects, but lets
the arrays produced by the fast path carry channels-last (NHWC) *memory*: an
output is the ``(N, H, W, C)`` C-contiguous result of one GEMM, returned through
``.transpose(0, 3, 1, 2)`` as an NCHW-shaped view. NumPy's element-wise ufuncs
follow the memory order of their operands, so ReLU, additions and the gradients
flowing back keep that layout for free, and every convolution and batch
normalization sees its data as a 2-D ``(N*H*W, C)`` row matrix:

* work is split over worker threads (one per core, :func:`set_threads`) by slices of the
  batch: NumPy releases the GIL inside copies, ufunc loops and BLAS calls, so the im2col
  copies and element-wise passes use every core, not only the GEMMs. Inside a parallel
  region NumPy's BLAS is pinned to one thread per worker through ``threadpoolctl`` (two
  multi-threaded GEMMs started at once fight over the same cores); where BLAS cannot be
  pinned everything runs on one thread with larger chunks.
* stride-1 convolutions (most of them): each worker zero-pads its images into an NHWC
  buffer and copies, for pieces of whole images of about :data:`CHUNK_BYTES`, an im2col
  over the kernel *width* only: ``(n, Ho + kh - 1, Wo, kw*C)``. Kernel row ``i`` then
  reads a plain view of it (rows ``i .. i + Ho - 1``), so the convolution is ``kh`` GEMMs
  with ``K = kw*C``, summed straight into the worker's rows of the output. The copy is
  ``kw`` rather than ``kh*kw`` times the input. grad-weight uses the same pieces
  (``piece_i.T @ gy`` per kernel row); grad-input is the forward convolution of ``gy``
  by the flipped, transposed kernel, so it takes the same path. Buffers are per-thread
  and reused between calls; 1x1 convolutions skip im2col entirely.
* strided convolutions: the full ``(rows, kh*kw*C)`` im2col per cache-sized piece (several
  images, or blocks of output rows of one large image) times the reshaped weights;
  grad-weight ``col.T @ gy`` over the same pieces; grad-input ``gy @ W`` per piece,
  folded back by ``kh*kw`` strided slice-adds.
* grouped convolutions (ResNeXt): the same cache-sized im2col pieces per worker, with the
  columns ordered group by group, so one batched ``matmul`` per piece runs the per-group
  GEMMs on strided views of the piece and writes each group's output columns in place;
  grad-weight likewise, grad-input per group folded back by slice-adds. Depthwise
  convolutions (one input channel per group) use ``kh*kw`` broadcast multiply-adds instead
  of GEMMs, split over the workers by images.
* batch normalization (training): per-channel statistics over the row matrix, computed
  per cache-sized block in float64 and merged across blocks and workers with Chan et
  al.'s parallel-variance formula, then one fused scale/shift pass; the backward pass
  likewise needs two passes. Test mode is one multiply-add pass.
* ReLU, its gradient and the residual addition are split over the workers too.
* glibc's malloc is asked to keep freed blocks mapped (:func:`_keep_freed_memory`), so
  the activation-sized arrays a step allocates and frees are not page-faulted in again.

Everything is dispatched automatically: :func:`install` replaces
``chainer.functions.convolution_2d`` (also as seen by ``L.Convolution2D``) with
a wrapper that picks :class:`FastConvolution2D` for supported NumPy inputs, and
wraps the generic batch-normalization implementation that Chainer's own
``BatchNormalization`` FunctionNode calls (so running statistics, links and
the Trainer are unchanged), and the NumPy forward methods of Chainer's ``ReLU``,
``ReLUGrad2`` and ``Add`` nodes. CuPy/ChainerX arrays, dilation, ``cover_all``,
non-float dtypes, double backprop and anything else unsupported take Chainer's
own code. ``CHAINER_NETS_CPU_FAST=0`` disables it at install time;
``chainer.config.cpu_fast`` (or the :func:`enabled` context manager) toggles it
at run time.

**Scope: every Chainer program in the process.** ``import chainer_nets`` calls
:func:`install`, which patches Chainer itself, so any code in the same interpreter that
calls ``F.convolution_2d`` / ``L.Convolution2D``, batch normalization, ``F.relu`` or adds two
Variables gets these kernels, not only chainer_nets' models. Chainer's features keep
working and give the same results with the fast path on and off: double backprop (the
convolution's backward is then built from Chainer's own functions), ``F.forget``, the
``chainer.config`` switches (``train``, ``enable_backprop``, ``type_check``, ``use_cudnn``,
``debug``, ...), and ``@static_graph`` models, for which the fast path steps aside while
the static schedule is recorded (:func:`is_enabled`), so the schedule holds Chainer's own
convolution. ``tests/test_cpu_fast_chainer_features.py`` checks each of these.

Package layout, lowest layer first (each module imports only from the ones above it):

* :mod:`~chainer_nets.cpu_fast.switch`: the on/off switch and the replaced originals;
* :mod:`~chainer_nets.cpu_fast.layout`: NHWC-memory views and a convolution's shapes;
* :mod:`~chainer_nets.cpu_fast.pool`: scratch buffers, the large-array pool, malloc tuning;
* :mod:`~chainer_nets.cpu_fast.workers`: the worker threads and chunk sizes;
* :mod:`~chainer_nets.cpu_fast.im2col`: padded images and im2col pieces;
* :mod:`~chainer_nets.cpu_fast.conv_kernels`: convolution forward/backward on arrays;
* :mod:`~chainer_nets.cpu_fast.conv`: the :class:`FastConvolution2D` node and the wrapper;
* :mod:`~chainer_nets.cpu_fast.bn`, :mod:`~chainer_nets.cpu_fast.elementwise`: batch
  normalization, ReLU and addition;
* this module: :func:`install` / :func:`uninstall`, which patch Chainer.

The tuning constants (``CHUNK_BYTES``, ``PARALLEL_MIN_SIZE``, ``ROWS_MIN_PIXELS``, ...) live
in the module that reads them; set them there.
"""

from __future__ import annotations

import os
import sys

import chainer
from chainer.functions.activation import relu as _relu_mod
from chainer.functions.connection import convolution_2d as _conv_mod
from chainer.functions.math import basic_math as _math_mod
from chainer.functions.normalization import batch_normalization as _bn_mod

from chainer_nets.cpu_fast.bn import _apply_bn_fwd, _bn_backward, _bn_forward
from chainer_nets.cpu_fast.conv import FastConvolution2D, convolution_2d
from chainer_nets.cpu_fast.elementwise import (
    _add_forward,
    _relu_forward_cpu,
    _relu_grad_forward_cpu,
)
from chainer_nets.cpu_fast.pool import _keep_freed_memory, release_buffers
from chainer_nets.cpu_fast.switch import _ORIG, enabled, is_enabled, is_installed
from chainer_nets.cpu_fast.workers import set_threads, threads

__all__ = [
    "FastConvolution2D",
    "convolution_2d",
    "enabled",
    "install",
    "is_enabled",
    "is_installed",
    "release_buffers",
    "set_threads",
    "threads",
    "uninstall",
]


def install(default: bool | None = None) -> None:
    """Patch Chainer so the fast path is chosen automatically for NumPy arrays (idempotent).

    ``default`` sets ``chainer.global_config.cpu_fast``; when None it is read from the
    environment variable ``CHAINER_NETS_CPU_FAST`` (``0``/``false``/``off`` disable it) on
    the first install only.
    """
    if _ORIG and default is None:
        return  # already installed: keep whatever the switch has been set to since
    if default is None:
        env = os.environ.get("CHAINER_NETS_CPU_FAST", "1").strip().lower()
        default = env not in ("0", "false", "off", "no")
    chainer.global_config.cpu_fast = bool(default)
    if _ORIG:
        return
    if default and sys.platform.startswith("linux"):
        _keep_freed_memory()
    impl = _bn_mod.GeneralBatchNormalizationImpl
    _ORIG["convolution_2d"] = _conv_mod.convolution_2d
    _ORIG["F.convolution_2d"] = chainer.functions.convolution_2d
    _ORIG["bn_forward"] = impl.forward
    _ORIG["bn_backward"] = impl.backward
    _ORIG["apply_bn_fwd"] = _bn_mod._apply_bn_fwd
    _ORIG["relu_fwd"] = _relu_mod.ReLU.forward_cpu
    _ORIG["relu_grad_fwd"] = _relu_mod.ReLUGrad2.forward_cpu
    _ORIG["add_fwd"] = _math_mod.Add.forward
    _conv_mod.convolution_2d = convolution_2d
    chainer.functions.convolution_2d = convolution_2d
    impl.forward = _bn_forward
    impl.backward = _bn_backward
    _bn_mod._apply_bn_fwd = _apply_bn_fwd
    _relu_mod.ReLU.forward_cpu = _relu_forward_cpu
    _relu_mod.ReLUGrad2.forward_cpu = _relu_grad_forward_cpu
    _math_mod.Add.forward = _add_forward


def uninstall() -> None:
    """Restore Chainer's original functions."""
    if not _ORIG:
        return
    impl = _bn_mod.GeneralBatchNormalizationImpl
    _conv_mod.convolution_2d = _ORIG["convolution_2d"]
    chainer.functions.convolution_2d = _ORIG["F.convolution_2d"]
    impl.forward = _ORIG["bn_forward"]
    impl.backward = _ORIG["bn_backward"]
    _bn_mod._apply_bn_fwd = _ORIG["apply_bn_fwd"]
    _relu_mod.ReLU.forward_cpu = _ORIG["relu_fwd"]
    _relu_mod.ReLUGrad2.forward_cpu = _ORIG["relu_grad_fwd"]
    _math_mod.Add.forward = _ORIG["add_fwd"]
    _ORIG.clear()
