"""Helpers shared by the paper notebooks in ``notebooks/`` (and a render command).

A notebook is written as ``notebooks/NN_name.py`` (jupytext py:percent) and
rendered, with its outputs, into ``notebooks/NN_name.ipynb``::

    python -m chainer_nets.notebook render                 # every notebook
    python -m chainer_nets.notebook render 08_resnet       # one notebook
    python -m chainer_nets.notebook check                  # .ipynb cells match the .py?

The helpers keep each notebook short and alike: :func:`show_source` prints the
code that implements an equation, :func:`shape_table` runs one forward pass and
lists every stage's output shape and parameters, :func:`param_check` compares
the computed parameter count with the paper's, :func:`register_sibling` makes a
small member of a model family trainable by name, :func:`quick_train` runs
:func:`chainer_nets.train.train` into a temporary folder and plots its curves,
and :func:`reproduction` shows the recorded full run (or the command to make it).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
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
from chainer_nets.registry import (  # noqa: E402
    _REGISTRY,
    ModelInfo,
    count_params,
    get_model_info,
    register,
)
from chainer_nets.runfolder import CONFIG_FILE, LOG_FILE, RESULT_FILE  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"


def _display(obj) -> None:
    try:
        from IPython.display import display

        display(obj)
    except ImportError:  # plain Python: print the text form
        print(getattr(obj, "data", obj))


def _markdown(text: str):
    try:
        from IPython.display import Markdown

        return Markdown(text)
    except ImportError:
        return text


def md_table(header: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def show_md(text: str) -> None:
    """Display markdown text (rendered in Jupyter and on GitHub)."""
    _display(_markdown(text))


def show_source(obj, member: str | None = None) -> None:
    """Display the real source code of a class, function or ``Class.member``."""
    target = getattr(obj, member) if member else obj
    src = inspect.getsource(target)
    where = f"{inspect.getmodule(target).__name__}"
    show_md(f"`{where}`:\n\n```python\n{textwrap.dedent(src)}\n```")


def setup_cpu_fast() -> bool:
    """Switch on the faster NumPy convolution path if this checkout has it; True if on."""
    try:
        from chainer_nets import cpu_fast

        if not cpu_fast.is_installed():
            cpu_fast.install()
        return cpu_fast.is_enabled()
    except Exception:  # optional: Chainer's own NumPy path is always correct
        return False


# ---------------------------------------------------------------------------------------------
# Shapes and parameters


class _ShapeHook(chainer.LinkHook):
    name = "ShapeHook"

    def __init__(self, paths: dict[int, str]) -> None:
        self.paths = paths
        self.calls: list[tuple[str, chainer.Link, tuple, tuple]] = []

    def forward_postprocess(self, args) -> None:
        path = self.paths.get(id(args.link))
        if path is None:
            return
        x = args.args[0] if args.args else None
        in_shape = tuple(x.shape) if x is not None and hasattr(x, "shape") else ()
        out_shape = tuple(args.out.shape) if hasattr(args.out, "shape") else ()
        self.calls.append((path, args.link, in_shape, out_shape))


def trace(model: chainer.Chain, batch: int = 1) -> list[dict]:
    """One forward pass of a (batch, 3, 32, 32) input; the outermost sub-links' calls in order."""
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
            "out": tuple(y.shape),
            "params": count_params(model),
        }
    )
    return rows


def shape_table(model: chainer.Chain, collapse: bool = True) -> list[dict]:
    """Show each stage's input/output shape and parameters; repeated identical blocks fold
    into one row ("blocks/1-17 x17"). Returns the uncollapsed rows."""
    rows = trace(model)
    body, total = rows[:-1], rows[-1]
    shown: list[list] = []
    i = 0
    while i < len(body):
        j = i
        key = (body[i]["type"], body[i]["in"], body[i]["out"], body[i]["params"])
        while (
            collapse
            and j + 1 < len(body)
            and key
            == (body[j + 1]["type"], body[j + 1]["in"], body[j + 1]["out"], body[j + 1]["params"])
        ):
            j += 1
        r = body[i]
        name = r["path"] if j == i else f"{r['path']} … {body[j]['path']} (×{j - i + 1})"
        n = j - i + 1
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


def _shape(s: tuple) -> str:
    return "×".join(str(d) for d in s)


def param_check(names: str | list[str]) -> list[dict]:
    """Compare registered models' parameter counts with their papers', at the paper's precision.

    Shows one table; returns ``{"model", "computed", "paper", "agrees"}`` per model.
    """
    out, rows = [], []
    for name in [names] if isinstance(names, str) else names:
        info = get_model_info(name)
        model = info.build()
        n = count_params(model, info.params_counting)
        n_all = count_params(model, "all")
        dec = info.params_decimals
        agrees = info.paper_params is not None and round(n / 1e6, dec) == info.paper_params_m
        if info.paper_params is None:
            verdict = "paper states none"
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
                verdict,
                f"{n_all:,}",
            ]
        )
        out.append({"model": name, "computed": n, "paper": info.paper_params, "agrees": agrees})
    show_md(
        md_table(
            [
                "model",
                "counted as the paper counts",
                "rounded like the paper",
                "paper",
                "agrees",
                "all parameters (incl. BN)",
            ],
            rows,
        )
    )
    return out


# ---------------------------------------------------------------------------------------------
# Quick training


def show_recipe(name: str, note: str = ""):
    """Print a recipe's summary (plus ``note``) and its listed departures from the paper."""
    from chainer_nets.recipes import get_recipe

    recipe = get_recipe(name)
    print(recipe.summary() + (f"; {note}" if note else ""))
    for departure in recipe.departures:
        print("-", departure)
    return recipe


def register_sibling(
    name: str, like: str, factory, description: str, recipe: str | None = None, **kwargs
) -> ModelInfo:
    """Register (in this process only) a small member of ``like``'s family so that
    :func:`chainer_nets.train.train` can train it by name; it has no paper numbers."""
    base = get_model_info(like)
    if name in _REGISTRY:
        return _REGISTRY[name]
    return register(
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
) -> dict:
    """Train ``model`` on a CIFAR-10 subset (into a temporary folder unless ``out``), plot the
    per-epoch curves and return ``train``'s result dict with the ``log`` added."""
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
    plot_log(
        result["log"],
        f"{model}: {train_subset} training images, {epochs} epochs, batch "
        f"{result['batch_size']} (quick)",
    )
    print(
        f"{model}: test accuracy {result['test_accuracy']:.2f}% on {result['test_images']} "
        f"test images after {result['epochs']} epochs; {result['notebook_seconds']} s, "
        f"{result['train_images_per_second']} images/s on {result['device']}"
    )
    return result


def plot_log(log: list[dict], title: str = ""):
    """Loss and accuracy per epoch from a LogReport log (train and test), side by side."""
    return cresults.plot_log(log, title)


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


def reproduction(model: str, device: str = "@cupy:0") -> cresults.Run | None:
    """Paper vs the 2016 Chainer code vs our recorded run; curves if a run exists, else the
    command that would produce it."""
    run = cresults.find_run(model)
    show_md(cresults.markdown_table([model]))
    if run is None:
        show_md(
            f"**Not yet reproduced.** No full run of `{model}` is recorded under `results/`. "
            f'On a GPU, this command (or this notebook with `MODE = "full"`) makes one:\n\n'
            f"```\n{cresults.train_command(model, device)}\n```"
        )
    else:
        cresults.plot_log(run.log, f"{model}: full recipe ({run.result.get('device', '?')})")
    return run


# ---------------------------------------------------------------------------------------------
# Rendering


def notebook_sources() -> list[Path]:
    """Every notebook source, ``notebooks/NN_*.py``, in order."""
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def _kernel_env() -> None:
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(REPO) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in paths if p])


def execute(source: Path, timeout: int = 600):
    """Read a py:percent notebook and execute it top to bottom in ``notebooks/``; return it."""
    import jupytext
    from nbclient import NotebookClient

    _kernel_env()
    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(source.parent)}},
    ).execute()
    return nb


def render(source: Path) -> Path:
    """Execute ``source`` and write the paired ``.ipynb`` with its outputs."""
    import nbformat

    t0 = time.time()
    nb = execute(source)
    for cell in nb.cells:  # timestamps would make every render a diff
        cell.metadata.pop("execution", None)
    target = source.with_suffix(".ipynb")
    nbformat.write(nb, target)
    print(
        f"rendered {target.name} in {time.time() - t0:.0f} s ({target.stat().st_size // 1024} KB)"
    )
    return target


def cell_sources(path: Path) -> list[tuple[str, str]]:
    """(cell type, source) of every cell of a .py or .ipynb notebook."""
    import jupytext

    nb = jupytext.read(path)
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def out_of_sync(source: Path) -> str | None:
    """None if ``source``'s .ipynb has the same cells, else a message saying what differs."""
    target = source.with_suffix(".ipynb")
    if not target.is_file():
        return f"{target.name} is missing"
    a, b = cell_sources(source), cell_sources(target)
    if a == b:
        return None
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"{target.name}: cell {i} differs from {source.name}"
    return f"{target.name} has {len(b)} cells, {source.name} has {len(a)}"


def main(argv: list[str] | None = None) -> int:
    """``python -m chainer_nets.notebook render|check [NAME ...]``."""
    p = argparse.ArgumentParser(prog="python -m chainer_nets.notebook")
    p.add_argument("action", choices=["render", "check"])
    p.add_argument("names", nargs="*", help="e.g. 08_resnet (default: all notebooks)")
    a = p.parse_args(argv)
    sources = notebook_sources()
    if a.names:
        sources = [s for s in sources if s.stem in a.names or s.name in a.names]
    bad = 0
    for s in sources:
        if a.action == "render":
            render(s)
        elif msg := out_of_sync(s):
            print(msg)
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
