r"""cuDNN convolutions for CuPy arrays through NVIDIA's cuDNN frontend (graph API), optional.

CuPy 14 dropped its cuDNN bindings, so Chainer 7 runs every GPU convolution as im2col +
GEMM: for a 3x3 kernel the column buffer is 9x the input, written, copied and read again
in each of the three passes. cuDNN computes the same three products directly:

.. math::

    y_{n,k,i,j} = \sum_{c,r,s} W_{k,c,r,s}\, x_{n,c,\,i s_h + r - p_h,\, j s_w + s - p_w}
    \quad\text{(forward)},\qquad
    \frac{\partial L}{\partial x} = W^\top \star \frac{\partial L}{\partial y}
    \quad\text{(data gradient)},\qquad
    \frac{\partial L}{\partial W} = x \star \frac{\partial L}{\partial y}
    \quad\text{(weight gradient)}.

Each product is one small cuDNN graph (``conv_fprop``, ``conv_dgrad``, ``conv_wgrad``),
built once per shape, layout, dtype, stride, padding and group count and cached. Tensors
are described to cuDNN with their real strides, so NCHW and channels-last (NHWC-physical)
arrays both go in without a copy; outputs are allocated channels-last, the layout cuDNN's
tensor-core kernels prefer, and handed to Chainer as NCHW-shaped views. The weight is kept
in Chainer's (K, C, kh, kw) layout and converted per call.

The path is an extra (``pip install chainer_nets[cudnn]`` adds ``nvidia-cudnn-frontend``;
the cuDNN 9 library comes with ``nvidia-cudnn-cu12``/``-cu13``). It covers float16 and
float32 (float64 and anything it does not cover fall back to Chainer's own path), without
dilation, ``cover_all`` or double backpropagation.

**Switch.** :func:`install` wraps ``chainer.functions.convolution_2d`` (after
:mod:`chainer_nets.cpu_fast`, which it keeps for NumPy arrays). Whether CuPy arrays take
the cuDNN path is ``chainer.config.cudnn_frontend``, initialised from the environment
variable ``CHAINER_NETS_CUDNN``: ``auto`` or ``1`` = on when the frontend imports, ``0`` =
off. **The default is off** until the path has passed the GPU correctness check
(``benchmarks/gpu``); :func:`enabled` switches it per block.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import chainer
import chainer.functions
import chainer.functions.connection.convolution_2d as _conv_mod
from chainer import function_node

#: Environment variable that sets the default of ``chainer.config.cudnn_frontend``.
ENV = "CHAINER_NETS_CUDNN"
#: The default while the path is unverified on a GPU.
DEFAULT = "0"

_ORIG: dict[str, Any] = {}
_STATE: dict[str, Any] = {
    "cudnn": None,
    "import_error": None,
    "handles": {},
    "graphs": {},
    "calls": 0,  # convolutions that took the cuDNN path (forward calls)
}


def calls() -> int:
    """How many forward convolutions have taken the cuDNN path in this process."""
    return int(_STATE["calls"])


def import_error() -> str | None:
    """Why the frontend did not import (None if it did or was not tried)."""
    frontend()
    return _STATE["import_error"]


# ----------------------------------------------------------------------------
# availability and switch
# ----------------------------------------------------------------------------


def frontend() -> Any | None:
    """The ``cudnn`` frontend module, or None when it (or CuPy) cannot be imported."""
    if _STATE["cudnn"] is None and _STATE["import_error"] is None:
        try:
            import cudnn
            import cupy  # noqa: F401

            _STATE["cudnn"] = cudnn
        except Exception as e:  # ImportError, or a missing cuDNN library
            _STATE["import_error"] = f"{type(e).__name__}: {e}"
    return _STATE["cudnn"]


def available() -> bool:
    """Whether the cuDNN frontend and CuPy import on this machine."""
    return frontend() is not None


def setting_from_env(value: str | None) -> bool | None:
    """Parse ``CHAINER_NETS_CUDNN``: True (on), False (off), None ("auto": on if available)."""
    v = (DEFAULT if value is None else value).strip().lower()
    if v in ("0", "false", "off", "no", ""):
        return False
    if v in ("1", "true", "on", "yes"):
        return True
    if v == "auto":
        return None
    raise ValueError(f"{ENV} must be auto, 1 or 0, got {value!r}")


def is_enabled() -> bool:
    """Whether CuPy convolutions take the cuDNN path now (installed, switched on, importable)."""
    return bool(_ORIG) and bool(getattr(chainer.config, "cudnn_frontend", False)) and available()


@contextlib.contextmanager
def enabled(flag: bool = True) -> Iterator[None]:
    """Switch the cuDNN path on or off inside the block (``chainer.config.cudnn_frontend``)."""
    with chainer.using_config("cudnn_frontend", bool(flag)):
        yield


def install(default: bool | None = None) -> bool:
    """Wrap Chainer's convolution so CuPy arrays can take the cuDNN path (idempotent).

    ``default`` sets ``chainer.global_config.cudnn_frontend``; None reads ``CHAINER_NETS_CUDNN``
    ("auto" resolves to whether the frontend imports). Returns the resulting setting."""
    if default is None:
        setting = setting_from_env(os.environ.get(ENV))
        default = available() if setting is None else setting
    chainer.global_config.cudnn_frontend = bool(default)
    if not _ORIG:
        _ORIG["convolution_2d"] = _conv_mod.convolution_2d
        _ORIG["F.convolution_2d"] = chainer.functions.convolution_2d
        _conv_mod.convolution_2d = convolution_2d
        chainer.functions.convolution_2d = convolution_2d
    return bool(default)


def uninstall() -> None:
    """Restore the convolution that was there before :func:`install`."""
    if _ORIG:
        _conv_mod.convolution_2d = _ORIG.pop("convolution_2d")
        chainer.functions.convolution_2d = _ORIG.pop("F.convolution_2d")


# ----------------------------------------------------------------------------
# tensor descriptions (pure arithmetic: tested on the CPU)
# ----------------------------------------------------------------------------


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def element_strides(strides_bytes: tuple[int, ...], itemsize: int) -> list[int]:
    """Strides in elements (cuDNN's unit) from NumPy/CuPy strides in bytes."""
    if any(s % itemsize for s in strides_bytes):
        raise ValueError(f"strides {strides_bytes} are not multiples of the item size {itemsize}")
    return [s // itemsize for s in strides_bytes]


def is_packed(shape: tuple[int, ...], strides: list[int]) -> bool:
    """Whether a 4-D NCHW-shaped array is dense in NCHW or in NHWC (channels-last) order."""
    n, c, h, w = shape
    nchw = [c * h * w, h * w, w, 1]
    nhwc = [h * w * c, 1, w * c, c]

    def same(ref: list[int]) -> bool:  # strides of size-1 axes do not matter
        return all(d == 1 or s == r for d, s, r in zip(shape, strides, ref, strict=True))

    return same(nchw) or same(nhwc)


def nhwc_strides(shape: tuple[int, ...]) -> list[int]:
    """Element strides of a channels-last array with NCHW-ordered ``shape``."""
    n, c, h, w = shape
    return [h * w * c, 1, w * c, c]


def conv_out_size(size: int, k: int, s: int, p: int) -> int:
    """Output length of a convolution (no dilation, no cover_all)."""
    return (size + 2 * p - k) // s + 1


def graph_key(kind: str, x_shape, x_strides, w_shape, dtype: str, stride, pad, groups) -> tuple:
    """Cache key of one graph: everything its plan depends on."""
    return (kind, tuple(x_shape), tuple(x_strides), tuple(w_shape), dtype, stride, pad, groups)


def supported(x: Any, W: Any, dilate: Any, groups: int, cover_all: bool) -> str | None:
    """Why the cuDNN path does not take this call (None: it does)."""
    if getattr(x, "ndim", 0) != 4 or getattr(W, "ndim", 0) != 4:
        return "not 2-D"
    if str(x.dtype) not in ("float16", "float32") or x.dtype != W.dtype:
        return f"dtype {x.dtype}/{W.dtype}"
    if _pair(dilate) != (1, 1):
        return "dilation"
    if cover_all:
        return "cover_all"
    if x.shape[1] != W.shape[1] * groups:
        return "channels"
    return None


# ----------------------------------------------------------------------------
# graphs (need the frontend and a GPU)
# ----------------------------------------------------------------------------


def _handle() -> Any:
    """One cuDNN handle per device, bound to CuPy's current stream."""
    import cupy

    cudnn = frontend()
    dev = cupy.cuda.Device().id
    h = _STATE["handles"].get(dev)
    if h is None:
        h = _STATE["handles"][dev] = cudnn.create_handle()
    cudnn.set_stream(handle=h, stream=cupy.cuda.get_current_stream().ptr)
    return h


def _cudnn_dtype(dtype: Any) -> Any:
    cudnn = frontend()
    return cudnn.data_type.HALF if str(dtype) == "float16" else cudnn.data_type.FLOAT


def _build(kind: str, x_shape, x_str, w_shape, w_str, y_shape, y_str, dtype, stride, pad):
    """Build the graph of one product; returns (graph, (a, b, out) tensors, workspace bytes)."""
    cudnn = frontend()
    io = _cudnn_dtype(dtype)
    g = cudnn.pygraph(
        io_data_type=io,
        intermediate_data_type=cudnn.data_type.FLOAT,
        compute_data_type=cudnn.data_type.FLOAT,
        handle=_handle(),
    )
    conv = {"padding": list(pad), "stride": list(stride), "dilation": [1, 1]}
    if kind == "fwd":
        x = g.tensor(name="x", dim=list(x_shape), stride=x_str, data_type=io)
        w = g.tensor(name="w", dim=list(w_shape), stride=w_str, data_type=io)
        out = g.conv_fprop(image=x, weight=w, **conv)
        out.set_output(True).set_dim(list(y_shape)).set_stride(y_str).set_data_type(io)
        a, b = x, w
    elif kind == "dgrad":
        gy = g.tensor(name="gy", dim=list(y_shape), stride=y_str, data_type=io)
        w = g.tensor(name="w", dim=list(w_shape), stride=w_str, data_type=io)
        out = g.conv_dgrad(loss=gy, filter=w, **conv)
        out.set_output(True).set_dim(list(x_shape)).set_stride(x_str).set_data_type(io)
        a, b = gy, w
    else:  # wgrad
        x = g.tensor(name="x", dim=list(x_shape), stride=x_str, data_type=io)
        gy = g.tensor(name="gy", dim=list(y_shape), stride=y_str, data_type=io)
        out = g.conv_wgrad(image=x, loss=gy, **conv)
        out.set_output(True).set_dim(list(w_shape)).set_stride(w_str).set_data_type(io)
        a, b = x, gy
    g.validate()
    g.build_operation_graph()
    g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    g.check_support()
    g.build_plans()
    return g, (a, b, out), int(g.get_workspace_size())


def _run(kind: str, a: Any, b: Any, out: Any, x_shape, x_str, w_shape, w_str, y_shape, y_str,
         stride, pad, groups) -> None:  # fmt: skip
    """Execute (building on first use) the ``kind`` graph on CuPy arrays ``a``, ``b`` -> ``out``."""
    import cupy

    key = graph_key(kind, x_shape, x_str, w_shape, str(a.dtype), stride, pad, groups)
    key = (*key, tuple(w_str), tuple(y_str))
    entry = _STATE["graphs"].get(key)
    if entry is None:
        entry = _STATE["graphs"][key] = _build(
            kind, x_shape, x_str, w_shape, w_str, y_shape, y_str, a.dtype, stride, pad
        )
    g, (ta, tb, tout), ws = entry
    workspace = cupy.empty(max(ws, 1), dtype=cupy.uint8)
    pack = {ta: a.data.ptr, tb: b.data.ptr, tout: out.data.ptr}
    g.execute(pack, workspace.data.ptr, handle=_handle())


def _dense(a: Any) -> Any:
    """``a`` itself if dense in NCHW or NHWC order, else a C-contiguous copy."""
    import cupy

    if is_packed(a.shape, element_strides(a.strides, a.itemsize)):
        return a
    return cupy.ascontiguousarray(a)


def _nhwc_empty(shape: tuple[int, ...], dtype: Any) -> Any:
    """An NCHW-shaped view of a new channels-last array."""
    import cupy

    n, c, h, w = shape
    return cupy.empty((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)


class CudnnConvolution2D(function_node.FunctionNode):
    """:math:`y = W \\star x + b` on cuDNN (forward); gradients by :class:`CudnnConvolution2DGrad`."""

    def __init__(self, stride: tuple[int, int], pad: tuple[int, int], groups: int) -> None:
        self.stride, self.pad, self.groups = stride, pad, groups

    def forward_gpu(self, inputs: tuple) -> tuple:
        """cuDNN forward convolution, plus the bias."""
        x, W = _dense(inputs[0]), inputs[1]
        self.retain_inputs((0, 1))
        n, _, h, w = x.shape
        k, _, kh, kw = W.shape
        y_shape = (
            n,
            k,
            conv_out_size(h, kh, self.stride[0], self.pad[0]),
            conv_out_size(w, kw, self.stride[1], self.pad[1]),
        )
        y = _nhwc_empty(y_shape, x.dtype)
        Wc = W.transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2)  # (K, C, kh, kw) in KRSC memory
        x_str = element_strides(x.strides, x.itemsize)
        w_str = element_strides(Wc.strides, Wc.itemsize)
        y_str = element_strides(y.strides, y.itemsize)
        _run("fwd", x, Wc, y, x.shape, x_str, W.shape, w_str, y_shape, y_str,
             self.stride, self.pad, self.groups)  # fmt: skip
        if len(inputs) == 3:
            y += inputs[2].reshape(1, k, 1, 1)
        return (y,)

    def backward(self, indexes: tuple, grad_outputs: tuple) -> tuple:
        """Data, weight (and bias) gradients in one node."""
        x, W = self.get_retained_inputs()
        (gy,) = grad_outputs
        grads = CudnnConvolution2DGrad(self.stride, self.pad, self.groups, len(self.inputs) == 3)
        out = grads.apply((x, W, gy))
        return tuple(out[i] for i in indexes)


class CudnnConvolution2DGrad(function_node.FunctionNode):
    """:math:`\\partial L/\\partial x`, :math:`\\partial L/\\partial W` (and the bias's) on cuDNN."""

    def __init__(
        self, stride: tuple[int, int], pad: tuple[int, int], groups: int, bias: bool
    ) -> None:
        self.stride, self.pad, self.groups, self.bias = stride, pad, groups, bias

    def forward_gpu(self, inputs: tuple) -> tuple:
        """cuDNN data- and weight-gradient convolutions."""
        import cupy

        x, W, gy = _dense(inputs[0]), inputs[1], _dense(inputs[2])
        Wc = W.transpose(0, 2, 3, 1).copy().transpose(0, 3, 1, 2)
        gx = _nhwc_empty(x.shape, x.dtype)
        gWc = cupy.empty((W.shape[0], W.shape[2], W.shape[3], W.shape[1]), dtype=W.dtype)
        gWc = gWc.transpose(0, 3, 1, 2)
        x_str = element_strides(x.strides, x.itemsize)
        w_str = element_strides(Wc.strides, Wc.itemsize)
        y_str = element_strides(gy.strides, gy.itemsize)
        gx_str = element_strides(gx.strides, gx.itemsize)
        args = (self.stride, self.pad, self.groups)
        _run("dgrad", gy, Wc, gx, x.shape, gx_str, W.shape, w_str, gy.shape, y_str, *args)
        _run("wgrad", x, gy, gWc, x.shape, x_str, W.shape, w_str, gy.shape, y_str, *args)
        out = [gx, cupy.ascontiguousarray(gWc)]
        if self.bias:
            out.append(gy.sum(axis=(0, 2, 3)))
        return tuple(out)

    def backward(self, indexes: tuple, grad_outputs: tuple) -> tuple:
        """Double backpropagation is not supported on this path."""
        raise NotImplementedError("the cuDNN convolution path has no double backpropagation")


def convolution_2d(
    x: Any,
    W: Any,
    b: Any = None,
    stride: int | tuple[int, int] = 1,
    pad: int | tuple[int, int] = 0,
    cover_all: bool = False,
    **kwargs: Any,
) -> chainer.Variable:
    """``chainer.functions.convolution_2d``, on cuDNN for CuPy arrays when switched on."""
    if is_enabled():
        xa = x.array if isinstance(x, chainer.Variable) else x
        Wa = W.array if isinstance(W, chainer.Variable) else W
        if chainer.backend.get_array_module(xa) is not chainer.backends.cuda.cupy:
            why: str | None = "not CuPy"
        else:
            why = supported(xa, Wa, kwargs.get("dilate", 1), kwargs.get("groups", 1), cover_all)
        if why is None:
            node = CudnnConvolution2D(_pair(stride), _pair(pad), int(kwargs.get("groups", 1)))
            args = (x, W) if b is None else (x, W, b)
            (y,) = node.apply(args)
            _STATE["calls"] += 1
            return y
    return _ORIG["convolution_2d"](x, W, b, stride, pad, cover_all, **kwargs)
