"""Shapes, parameters and operation counts of a model for the paper notebooks: :func:`trace`,
:func:`shape_table`, :func:`param_check`, :func:`forward_flops` (re-exported by
:mod:`chainer_nets.notebook`)."""

from __future__ import annotations

# isort: off
import chainer_nets  # noqa: F401  (the compat layer must come before chainer)
# isort: on

import chainer  # noqa: E402
import numpy as np  # noqa: E402

from chainer_nets.registry import count_params, get_model_info  # noqa: E402
from chainer_nets.results import md_table  # noqa: E402


def _display(obj) -> None:
    try:
        from IPython.display import display

        display(obj)
    except ImportError:  # plain Python: print the text form
        print(getattr(obj, "data", obj))


def show_md(text: str) -> None:
    """Display markdown text (rendered in Jupyter and on GitHub; printed elsewhere)."""
    try:
        from IPython.display import Markdown

        _display(Markdown(text))
    except ImportError:
        print(text)


def _shapes(obj) -> tuple:
    """Shape of an array-like, or a tuple of shapes for a tuple of arrays."""
    if hasattr(obj, "shape"):
        return tuple(obj.shape)
    if isinstance(obj, (tuple, list)):
        return tuple(_shapes(o) for o in obj if hasattr(o, "shape") or isinstance(o, tuple))
    return ()


class _ShapeHook(chainer.LinkHook):
    name = "ShapeHook"

    def __init__(self, paths: dict[int, str]) -> None:
        self.paths = paths
        self.calls: list[tuple[str, chainer.Link, tuple, tuple]] = []

    def forward_postprocess(self, args) -> None:
        path = self.paths.get(id(args.link))
        if path is None:
            return
        arrays = tuple(a for a in args.args if hasattr(a, "shape"))
        shape_in = _shapes(arrays[0]) if len(arrays) == 1 else _shapes(arrays)
        self.calls.append((path, args.link, shape_in, _shapes(args.out)))


def trace(model: chainer.Chain, batch: int = 1) -> list[dict]:
    """One forward pass of a (batch, 3, 32, 32) input; the outermost sub-links' calls in order.

    A link that takes or returns several arrays (RiR's residual and transient streams) has a
    tuple of shapes as its ``in``/``out``.
    """
    paths = {id(link): path for path, link in model.namedlinks(skipself=True)}
    hook = _ShapeHook(paths)
    x = np.random.default_rng(0).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    with chainer.using_config("train", False), chainer.no_backprop_mode(), hook:
        y = model(x)
    called = [c[0] for c in hook.calls]
    rows = []
    for path, link, shape_in, shape_out in hook.calls:
        if any(path != p and path.startswith(p + "/") for p in called):
            continue  # inside a link that is itself listed
        rows.append(
            {
                "path": path.lstrip("/"),
                "type": type(link).__name__,
                "in": shape_in,
                "out": shape_out,
                "params": count_params(link),
            }
        )
    rows.append(
        {
            "path": "(model)",
            "type": type(model).__name__,
            "in": x.shape,
            "out": _shapes(y),
            "params": count_params(model),
        }
    )
    return rows


def _shape(s: tuple) -> str:
    """``1×16×32×32``; a tuple of shapes as ``1×16×32×32, 1×16×32×32``."""
    if s and isinstance(s[0], tuple):
        return ", ".join(_shape(t) for t in s)
    return "×".join(str(d) for d in s) if s else "—"


def shape_table(model: chainer.Chain, collapse: bool = True) -> list[dict]:
    """Show each stage's input/output shape and parameters; repeated identical blocks fold
    into one row ("blocks/1 … blocks/17 (×17)"). Returns the uncollapsed rows."""
    rows = trace(model)
    body, total = rows[:-1], rows[-1]
    shown: list[list] = []
    i = 0

    def key(r: dict) -> tuple:
        return (r["type"], r["in"], r["out"], r["params"])

    while i < len(body):
        j = i
        while collapse and j + 1 < len(body) and key(body[i]) == key(body[j + 1]):
            j += 1
        r, n = body[i], j - i + 1
        name = r["path"] if n == 1 else f"{r['path']} … {body[j]['path']} (×{n})"
        params = f"{r['params']:,}" + (f" ×{n} = {r['params'] * n:,}" if n > 1 else "")
        shown.append([name, r["type"], _shape(r["in"]), _shape(r["out"]), params])
        i = j + 1
    shown.append(
        [
            "**total**",
            total["type"],
            _shape(total["in"]),
            _shape(total["out"]),
            f"**{total['params']:,}**",
        ]
    )
    show_md(md_table(["layer", "type", "input", "output", "parameters"], shown))
    return rows


#: Accepted values of ``param_check``'s ``source``: where the registered reference figure is from.
PARAM_SOURCES = ("paper", "2016 table")


def param_check(names: str | list[str], *, source: str, where: str = "") -> list[dict]:
    """Compare registered models' parameter counts with their reference figure, at its precision.

    ``source`` names where the registered figure comes from: ``"paper"`` (``where`` says
    which table or section) or ``"2016 table"`` (the table of the 2016 Chainer code, used
    when the paper's own count could not be checked; it is then never called the paper's).
    Shows one table and a sentence; returns ``{"model", "computed", "reference", "source",
    "agrees"}`` per model.
    """
    if source not in PARAM_SOURCES:
        raise ValueError(f"source must be one of {PARAM_SOURCES}, got {source!r}")
    ref_name = "the paper" if source == "paper" else "the 2016 Chainer table"
    ref_full = f"{ref_name} ({where})" if where else ref_name
    out, rows = [], []
    for name in [names] if isinstance(names, str) else names:
        info = get_model_info(name)
        model = info.build()
        n = count_params(model, info.params_counting)
        n_all = count_params(model, "all")
        dec = info.params_decimals
        agrees = info.paper_params is not None and round(n / 1e6, dec) == info.paper_params_m
        if info.paper_params is None:
            verdict = "no figure to compare"
        elif agrees:
            verdict = "yes"
        else:
            verdict = "**no**" + (f" ({info.params_mismatch})" if info.params_mismatch else "")
        how = "all" if info.params_counting == "all" else "conv/linear weights"
        rows.append(
            [
                name,
                f"{n:,} ({how})",
                f"{n / 1e6:.{dec}f}M",
                f"{info.paper_params}M" if info.paper_params else "—",
                source,
                verdict,
                f"{n_all:,}",
            ]
        )
        out.append(
            {
                "model": name,
                "computed": n,
                "reference": info.paper_params,
                "source": source,
                "agrees": agrees,
            }
        )
    show_md(
        md_table(
            [
                "model",
                "ours, counted as the reference counts",
                "ours, rounded like the reference",
                "reference figure",
                "source of the figure",
                "agrees",
                "all parameters (incl. BN)",
            ],
            rows,
        )
    )
    print(f"Reference figure: {ref_full}.")
    return out


class _FlopHook(chainer.LinkHook):
    """Counts multiply-adds of convolution and linear layers during one forward pass."""

    name = "FlopHook"

    def __init__(self) -> None:
        self.macs = 0

    def forward_postprocess(self, args) -> None:
        link, y = args.link, args.out
        if isinstance(link, chainer.links.Convolution2D):
            w = link.W.array
            self.macs += int(np.prod(y.shape)) * int(np.prod(w.shape[1:]))
        elif isinstance(link, chainer.links.Linear):
            self.macs += int(np.prod(y.shape)) * int(link.W.shape[1])


def forward_flops(model: str) -> int:
    """Floating-point operations of one image's forward pass through the convolution and linear
    layers of ``model`` (2 per multiply-add; BN, activations and pooling not counted)."""
    net = get_model_info(model).build()
    x = np.zeros((1, 3, 32, 32), np.float32)
    hook = _FlopHook()
    with chainer.using_config("train", False), chainer.no_backprop_mode(), hook:
        net(x)
    return 2 * hook.macs
