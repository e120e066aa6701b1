"""The helpers the paper notebooks in ``notebooks/`` call (imported as ``nb``).

Every notebook follows one skeleton (see ``notebooks/README.md``) and uses these
helpers for its repetitive parts:

* reading: :func:`show_md`, :func:`show_source` (the real code of an equation),
  :func:`draw_block` (a block diagram drawn with matplotlib from a short description);
* the network: :func:`shape_table` (one forward pass: shapes and parameters of every
  stage), :func:`param_check` (our count against a named reference figure);
* the recipe: :func:`show_recipe`;
* the experiment: :func:`quick_settings` (the reader's settings, lighter in CI),
  :func:`register_sibling`, :func:`quick_train`, :func:`plot_runs`, :func:`noise_level`;
* the full run: :func:`full_train`, :func:`reproduction` (paper / 2016 Chainer / ours,
  with an estimate of the GPU time of the full recipe).

Rendering the notebooks is a development command kept apart, in
:mod:`chainer_nets.notebook_render`.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import tempfile
import textwrap
import time
from pathlib import Path

# isort: off
import chainer_nets  # noqa: F401  (the compat layer must come before chainer)
# isort: on

import chainer  # noqa: E402
import numpy as np  # noqa: E402

from chainer_nets import results as cresults  # noqa: E402
from chainer_nets.notebook_render import CI_ENV  # noqa: E402
from chainer_nets.registry import (  # noqa: E402
    ModelInfo,
    count_params,
    get_model_info,
    register_once,
)
from chainer_nets.results import md_table  # noqa: E402, F401  (re-exported for the cells)
from chainer_nets.runfolder import CONFIG_FILE, LOG_FILE, MODEL_FILE, RESULT_FILE  # noqa: E402

#: Sustained float32 training throughput assumed by :func:`gpu_hours` (TFLOP/s): a round figure
#: for Chainer's im2col + cuBLAS path on one recent data-centre GPU, not a measurement.
ASSUMED_GPU_TFLOPS = 10.0
CIFAR10_TRAIN_IMAGES = 50_000


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


def show_source(obj, member: str | None = None) -> None:
    """Display the real source code of a class, function or ``Class.member``."""
    target = getattr(obj, member) if member else obj
    src = inspect.getsource(target)
    where = f"{inspect.getmodule(target).__name__}"
    show_md(f"`{where}`:\n\n```python\n{textwrap.dedent(src)}\n```")


def setup_cpu_fast() -> bool:
    """Switch on the package's faster NumPy convolution path if available; True if on."""
    try:
        from chainer_nets import cpu_fast

        if not cpu_fast.is_installed():
            cpu_fast.install()
        return cpu_fast.is_enabled()
    except Exception:  # optional: Chainer's own NumPy path is always correct
        return False


# ---------------------------------------------------------------------------------------------
# Block diagrams

_OPS = {"+", "×", "*", "⊕", "⊙", "−", "mean", "max", "concat", "join", "gate"}
_COLOURS = [
    (("conv", "linear", "fc", "w_", "h("), "#cfe2f3"),
    (("bn", "batch"), "#fff2cc"),
    (("relu", "σ", "sigmoid", "tanh", "softmax"), "#d9ead3"),
    (("drop", "gate", "bernoulli", "t(", "1−t", "1-t", "scale", "λ"), "#f4cccc"),
    (("pool", "avg", "shortcut", "pad", "identity"), "#e6e6e6"),
]


def _parse_block(description: str) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Nodes (in order of appearance) and (from, to, label) edges of a block description."""
    nodes: list[str] = []
    edges: list[tuple[str, str, str]] = []
    for chain in re.split(r"[;\n]", description):
        if not chain.strip():
            continue
        parts = re.split(r"\s*-(?:\[([^\]]*)\]-)?>\s*", chain.strip())
        names, labels = parts[0::2], parts[1::2]
        for n in names:
            if not n:
                raise ValueError(f"empty node in {chain!r}")
            if n not in nodes:
                nodes.append(n)
        for a, b, lab in zip(names[:-1], names[1:], labels, strict=True):
            edges.append((a, b, lab or ""))
    return nodes, edges


def _layers(nodes: list[str], edges: list[tuple[str, str, str]]) -> dict[str, int]:
    """Longest-path depth of each node from the inputs (raises on a cycle)."""
    depth = {n: 0 for n in nodes}
    for _ in range(len(nodes) + 1):
        changed = False
        for a, b, _lab in edges:
            if depth[b] < depth[a] + 1:
                depth[b] = depth[a] + 1
                changed = True
        if not changed:
            return depth
    raise ValueError("the block description has a cycle")


def draw_block(description: str, title: str = "", note: str = ""):
    """Draw a block as a top-to-bottom diagram from a short text description; return the figure.

    ``description`` lists paths separated by ``;`` or new lines, each ``a -> b -> c``; an
    edge may carry a label, ``a -[identity]-> +``. A node's text is its name up to ``#``
    (``BN#1`` and ``BN#2`` are two boxes labelled ``BN``). Operators (``+``, ``×``, ``mean``,
    ``concat``) are drawn as circles, inputs and outputs as plain text, layers as boxes coloured
    by kind (convolution, normalisation, non-linearity, gate or drop, pooling or shortcut).
    Edges that skip layers run along the side, so the main path stays a straight column.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyBboxPatch

    nodes, edges = _parse_block(description)
    depth = _layers(nodes, edges)
    n_layers = max(depth.values()) + 1
    by_layer: dict[int, list[str]] = {}
    for n in nodes:
        by_layer.setdefault(depth[n], []).append(n)
    dx, dy, box_h = 2.6, 0.62, 0.38
    pos, half_w = {}, {}
    has_in = {b for _a, b, _lab in edges}
    has_out = {a for a, _b, _lab in edges}
    for k, row in by_layer.items():
        for i, n in enumerate(row):
            pos[n] = ((i - (len(row) - 1) / 2) * dx, -k * dy)
            text = n.split("#")[0]
            half_w[n] = 0.18 if text in _OPS else max(0.45, 0.055 * len(text) + 0.2)
    fig, ax = plt.subplots(dpi=90)
    for n in nodes:
        x, y = pos[n]
        text = n.split("#")[0]
        if text in _OPS:
            ax.add_patch(Circle((x, y), 0.17, fc="white", ec="black", lw=1, zorder=3))
            ax.text(x, y, text, ha="center", va="center", fontsize=10, zorder=4)
        elif n not in has_in or n not in has_out:  # the block's input or output
            ax.text(x, y, text, ha="center", va="center", fontsize=10, style="italic", zorder=4)
        else:
            low = text.lower()
            colour = next((c for keys, c in _COLOURS if any(k in low for k in keys)), "#f3f3f3")
            w = half_w[n]
            ax.add_patch(
                FancyBboxPatch(
                    (x - w, y - box_h / 2),
                    2 * w,
                    box_h,
                    boxstyle="round,pad=0.02,rounding_size=0.08",
                    fc=colour,
                    ec="#555555",
                    lw=0.8,
                    zorder=3,
                )
            )
            ax.text(x, y, text, ha="center", va="center", fontsize=8.5, zorder=4)
    arrow = dict(arrowstyle="-|>", color="#333333", lw=1, shrinkA=0, shrinkB=0)
    right_edge = max(pos[n][0] + half_w[n] for n in nodes)
    left_edge = min(pos[n][0] - half_w[n] for n in nodes)
    side_used = {1: 0, -1: 0}
    x_min, x_max = left_edge, right_edge
    for a, b, lab in edges:
        (xa, ya), (xb, yb) = pos[a], pos[b]
        top_b = yb + (0.17 if b.split("#")[0] in _OPS else box_h / 2)
        bottom_a = ya - (0.17 if a.split("#")[0] in _OPS else box_h / 2)
        if depth[b] - depth[a] == 1 or abs(xa - xb) > 1e-9:
            ax.annotate("", xy=(xb, top_b), xytext=(xa, bottom_a), arrowprops=arrow, zorder=2)
            if lab:
                ax.text(
                    (xa + xb) / 2 + 0.08,
                    (bottom_a + top_b) / 2,
                    lab,
                    fontsize=7.5,
                    color="#444444",
                    va="center",
                )
            continue
        side = 1 if xa >= 0 else -1
        side_used[side] += 1
        xs = (right_edge if side > 0 else left_edge) + side * 0.35 * side_used[side]
        x_min, x_max = min(x_min, xs), max(x_max, xs)
        ax.plot([xa + side * half_w[a], xs, xs], [ya, ya, yb], color="#333333", lw=1, zorder=2)
        ax.annotate("", xy=(xb + side * half_w[b], yb), xytext=(xs, yb), arrowprops=arrow)
        if lab:
            ax.text(
                xs + side * 0.06,
                (ya + yb) / 2,
                lab,
                fontsize=7.5,
                color="#444444",
                va="center",
                ha="left" if side > 0 else "right",
                rotation=0,
            )
            if side > 0:
                x_max = max(x_max, xs + 0.085 * len(lab) + 0.1)
            else:
                x_min = min(x_min, xs - 0.085 * len(lab) - 0.1)
    ax.set_xlim(x_min - 0.3, x_max + 0.3)
    ax.set_ylim(-(n_layers - 1) * dy - 0.4, 0.4)
    inch = 0.75  # per unit of the layout, so that text and boxes keep their proportions
    fig.set_size_inches(
        max(3.0, (x_max - x_min + 0.6) * inch), ((n_layers - 1) * dy + 0.8) * inch + 0.5
    )
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    if note:
        fig.text(0.5, 0.01, note, ha="center", fontsize=8, color="#444444")
    fig.tight_layout()
    plt.show()
    return fig


# ---------------------------------------------------------------------------------------------
# Shapes and parameters


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


# ---------------------------------------------------------------------------------------------
# Recipe and the experiment


def show_recipe(name: str, note: str = ""):
    """Print a recipe's summary (plus ``note``) and its listed departures from the paper."""
    from chainer_nets.recipes import get_recipe

    recipe = get_recipe(name)
    print(recipe.summary() + (f"; {note}" if note else ""))
    for departure in recipe.departures:
        print("-", departure)
    return recipe


def quick_settings(quick: dict, ci: dict | None = None) -> dict:
    """The notebook's quick settings; when the tests run it (CI), updated by ``ci`` (lighter)."""
    if os.environ.get(CI_ENV) == "1" and ci:
        print(f"CI run: lighter settings {ci} instead of the reader's {quick}")
        return {**quick, **ci}
    return dict(quick)


def is_ci() -> bool:
    """Whether the notebook is being executed by the tests with their lighter settings."""
    return os.environ.get(CI_ENV) == "1"


def register_sibling(
    name: str, like: str, factory, description: str, recipe: str | None = None, **kwargs
) -> ModelInfo:
    """Register (in this process only) a small member of ``like``'s family so that
    :func:`quick_train` can train it by name; it carries no paper numbers."""
    base = get_model_info(like)
    return register_once(
        ModelInfo(
            name=name,
            factory=factory,
            kwargs=kwargs,
            paper_no=base.paper_no,
            paper=base.paper,
            arxiv=base.arxiv,
            recipe=recipe or base.recipe,
            paper_accuracy=None,
            paper_params=None,
            description=description,
            params_counting=base.params_counting,
        )
    )


def quick_train(
    model: str,
    train_subset: int,
    test_subset: int,
    epochs: float,
    batch_size: int | None = None,
    lr: float | None = None,
    device: str = "@numpy",
    seed: int = 0,
    out: str | None = None,
    plot: bool = True,
    keep_model: bool = False,
) -> dict:
    """Train ``model`` on a CIFAR-10 subset with its recipe squeezed into ``epochs`` (into a
    temporary folder unless ``out``); return ``train``'s result dict plus the per-epoch ``log``
    (and the trained ``net`` with ``keep_model``). Plots the curves unless ``plot=False``."""
    from chainer_nets.train import TrainConfig, train

    if chainer.get_device(device).xp is np:
        setup_cpu_fast()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(out) if out else Path(tmp) / model
        t0 = time.time()
        result = train(
            TrainConfig(
                model=model,
                device=device,
                epochs=epochs,
                train_subset=train_subset,
                test_subset=test_subset,
                batch_size=batch_size,
                lr=lr,
                seed=seed,
                out=str(run_dir),
                progress=False,
                print_report=False,
            )
        )
        result["log"] = json.loads((run_dir / LOG_FILE).read_text())
        result["batch_size"] = json.loads((run_dir / CONFIG_FILE).read_text())["batch_size"]
        result["notebook_seconds"] = round(time.time() - t0, 1)
        if keep_model:
            net = get_model_info(model).build()
            chainer.serializers.load_npz(str(run_dir / MODEL_FILE), net)
            result["net"] = net
    if plot:
        plot_log(
            result["log"],
            f"{model}: {train_subset} training images, {epochs} epochs, batch "
            f"{result['batch_size']} (quick)",
        )
    print(
        f"{model}: test accuracy {result['test_accuracy']:.2f}% on {result['test_images']} "
        f"test images after {result['epochs']} epochs; {result['notebook_seconds']} s"
    )
    return result


def plot_log(log: list[dict], title: str = ""):
    """Loss and accuracy per epoch from a LogReport log (train and test), side by side."""
    return cresults.plot_log(log, title)


def plot_runs(runs: dict[str, dict], title: str = ""):
    """Several quick runs on one figure: training loss and test accuracy per epoch, one line each."""
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=80)
    for label, res in runs.items():
        log = res["log"]
        ep = [e["epoch"] for e in log]
        ax_loss.plot(ep, [e["main/loss"] for e in log], marker="o", label=label)
        acc = [100 * e["test/main/accuracy"] for e in log if "test/main/accuracy" in e]
        if acc:
            ax_acc.plot(ep[: len(acc)], acc, marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="training loss (cross-entropy)")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)")
    ax_acc.axhline(10, color="grey", lw=0.8, ls=":", label="chance (10%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.show()
    return fig


def accuracy_se(accuracy: float, n: int) -> float:
    """Standard error (in points) of an accuracy (in %) measured on ``n`` independent images."""
    p = min(max(accuracy / 100, 0.0), 1.0)
    return 100 * math.sqrt(max(p * (1 - p), 1.0 / n) / n)


def noise_level(accuracy: float, n: int) -> float:
    """Print the standard error of ``accuracy`` (%) on ``n`` test images, in one sentence; return it.

    The gap between two runs measured on different or the same images is noise-dominated
    until it exceeds about twice the standard error of a difference, 2·√2·se.
    """
    se = accuracy_se(accuracy, n)
    print(
        f"Noise level: on {n} test images an accuracy near {accuracy:.1f}% has a standard "
        f"error of about {se:.1f} points; a gap between two such accuracies below about "
        f"{2 * math.sqrt(2) * se:.1f} points may be noise alone."
    )
    return se


# ---------------------------------------------------------------------------------------------
# Full run and the reproduction section


def full_train(model: str, device: str) -> dict:
    """Run the paper's full recipe for ``model`` into ``results/<model>`` (resumes if started)."""
    from chainer_nets.train import TrainConfig, train

    out = cresults.results_dir() / model
    cmd = cresults.train_command(model, device)
    resume = (out / CONFIG_FILE).is_file() and not (out / RESULT_FILE).is_file()
    return train(
        TrainConfig(
            model=model,
            device=device,
            out=str(out),
            resume=resume,
            command=cmd,
            progress=True,
            print_report=False,
        )
    )


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


def gpu_hours(model: str, tflops: float = ASSUMED_GPU_TFLOPS) -> float:
    """Estimated GPU hours of ``model``'s full recipe: 3 × forward FLOPs per training image
    (forward and backward) × images seen, at ``tflops`` sustained; evaluation not counted."""
    from chainer_nets.recipes import get_recipe

    recipe = get_recipe(get_model_info(model).recipe)
    per_epoch = CIFAR10_TRAIN_IMAGES / recipe.batch_size
    iterations, _ = recipe.in_iterations(per_epoch)
    images = iterations * recipe.batch_size
    return 3 * forward_flops(model) * images / (tflops * 1e12) / 3600


def reproduction(model: str, device: str = "@cupy:0") -> cresults.Run | None:
    """Paper vs the 2016 Chainer code vs our recorded run (generated table), the GPU time of the
    full recipe (measured if a run is recorded, else estimated), and the curves or the command."""
    run = cresults.find_run(model)
    show_md(cresults.markdown_table([model]))
    flops = forward_flops(model)
    hours = gpu_hours(model)
    if run is not None and run.result.get("wall_seconds"):
        print(
            f"GPU time of the full recipe: {run.result['wall_seconds'] / 3600:.1f} h measured on "
            f"{run.result.get('device', '?')} (read from results/)."
        )
        cresults.plot_log(run.log, f"{model}: full recipe ({run.result.get('device', '?')})")
        return run
    print(
        f"GPU time of the full recipe, estimated: about {hours:.1f} h. That is 3 × "
        f"{flops / 1e6:,.0f} MFLOP per image (forward and backward through the convolution and "
        f"linear layers) × every image the recipe shows, at an assumed {ASSUMED_GPU_TFLOPS:g} "
        "TFLOP/s sustained; small layers rarely reach that on Chainer's path, so read it as a "
        "lower bound. A recorded run replaces it with the measured wall time."
    )
    show_md(
        f"**Not yet reproduced.** No full run of `{model}` is recorded under `results/`. "
        f'On a GPU, this command (or this notebook with `MODE = "full"`) makes one:\n\n'
        f"```\n{cresults.train_command(model, device)}\n```"
    )
    return None


if __name__ == "__main__":  # the render command moved to notebook_render; keep the old spelling
    from chainer_nets.notebook_render import main

    raise SystemExit(main())
