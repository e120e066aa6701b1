"""Render and check the paper notebooks (a development command; the cells never import it).

A notebook is written as ``notebooks/NN_name.py`` (jupytext py:percent) and
rendered, with its outputs, into ``notebooks/NN_name.ipynb``::

    python -m chainer_nets.notebook_render render 08_resnet  # one notebook (or several)
    python -m chainer_nets.notebook_render render            # every notebook
    python -m chainer_nets.notebook_render check             # stale or out-of-sync .ipynb?

A render executes the ``.py`` top to bottom in a fresh kernel, with matplotlib's
inline backend (so every figure lands in the ``.ipynb`` as ``image/png``, whatever
``MPLBACKEND`` says), and records in the notebook's metadata a hash of every
source file of the package (:func:`package_digest`). ``check`` and the tests
compare it with the current sources: a notebook rendered from older code is
flagged by name and by the files that changed since.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent
NOTEBOOKS = REPO / "notebooks"
#: Notebook metadata key holding the package digest of the render.
META_KEY = "chainer_nets"
#: Environment variable that tells the notebook helpers to use their lighter CI settings.
CI_ENV = "CHAINER_NETS_NOTEBOOK_CI"


def notebook_sources() -> list[Path]:
    """Every notebook source, ``notebooks/NN_*.py``, in order."""
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def package_files(source: Path | None = None) -> dict[str, str]:
    """SHA-256 (first 16 hex digits) of every ``.py`` and ``.toml`` file of the package, by
    path relative to the package; this module is left out (it does not change what a cell shows).

    With a notebook ``source``, only the files its outputs can depend on: everything except the
    model modules and recipes of other papers (see :func:`_unrelated_model_files`), so adding a
    paper does not make every other notebook stale.
    """
    out = {}
    for p in sorted(PACKAGE.rglob("*")):
        if p.suffix not in (".py", ".toml") or p == Path(__file__).resolve():
            continue
        if "__pycache__" in p.parts:
            continue
        out[p.relative_to(PACKAGE).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    if source is not None:
        for k in _unrelated_model_files(source, out):
            del out[k]
    return out


def _unrelated_model_files(source: Path, files: dict[str, str]) -> set[str]:
    """Files under ``models/`` and ``recipes/`` that notebook ``source`` cannot depend on.

    A notebook depends on the modules and recipes (with the recipes they extend) of its own
    paper's models and of every registered model it names, and on the model modules those
    modules take classes or functions from.
    """
    import importlib
    import re
    import tomllib

    from chainer_nets.registry import list_models

    number = int(source.name[:2]) if source.name[:2].isdigit() else -1
    text = source.read_text(encoding="utf-8") if source.is_file() else ""
    modules: set[str] = set()
    recipe_names: set[str] = set()
    for info in list_models():
        if info.paper_no == number or re.search(rf"\b{re.escape(info.name)}\b", text):
            modules.add(info.factory.__module__)
            recipe_names.add(info.recipe)
    todo = list(modules)
    while todo:  # model modules that a used module takes blocks from
        module = importlib.import_module(todo.pop())
        for value in vars(module).values():
            name = value.__name__ if isinstance(value, type(module)) else None
            name = name or getattr(value, "__module__", None)
            if name and name.startswith("chainer_nets.models.") and name not in modules:
                modules.add(name)
                todo.append(name)
    modules |= {
        f"chainer_nets.models.{m}" for m in re.findall(r"chainer_nets\.models\.(\w+)", text)
    }
    keep = {m.removeprefix("chainer_nets.").replace(".", "/") + ".py" for m in modules}
    todo = list(recipe_names)
    while todo:  # a recipe's `extends` chain
        name = todo.pop()
        keep.add(f"recipes/{name}.toml")
        path = PACKAGE / "recipes" / f"{name}.toml"
        parent = tomllib.loads(path.read_text(encoding="utf-8")).get("extends")
        if parent and f"recipes/{parent}.toml" not in keep:
            todo.append(parent)
    return {
        k
        for k in files
        if k.startswith(("models/", "recipes/")) and not k.endswith("__init__.py") and k not in keep
    }


def package_digest(files: dict[str, str] | None = None) -> str:
    """One hash of the package source (of :func:`package_files`)."""
    files = package_files() if files is None else files
    text = "\n".join(f"{k} {v}" for k, v in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _kernel_env(ci: bool) -> Iterator[None]:
    """The environment the kernel inherits: this repository importable, inline figures, CI flag."""
    saved = dict(os.environ)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(REPO) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in paths if p])
    # MPLBACKEND=Agg (as in CI) would make plt.show() draw nothing into the notebook.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    if ci:
        os.environ[CI_ENV] = "1"
    else:
        os.environ.pop(CI_ENV, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def execute(source: Path, timeout: int = 1800, ci: bool = False):
    """Read a py:percent notebook and execute it top to bottom in ``notebooks/``; return it.

    ``ci=True`` lets the notebook use its lighter CI settings (see ``notebook.quick_settings``).
    """
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    with _kernel_env(ci):
        NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(source.parent)}},
        ).execute()
    return nb


def render(source: Path) -> Path:
    """Execute ``source`` (reader's quick mode) and write the paired ``.ipynb`` with its outputs
    and the package digest."""
    import nbformat

    t0 = time.time()
    files = package_files(source)
    nb = execute(source)
    for cell in nb.cells:  # timestamps would make every render a diff
        cell.metadata.pop("execution", None)
    nb.metadata[META_KEY] = {"package_digest": package_digest(files), "package_files": files}
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


def stale(source: Path) -> str | None:
    """None if ``source``'s .ipynb was rendered from the current package source, else why not."""
    import nbformat

    target = source.with_suffix(".ipynb")
    if not target.is_file():
        return f"{target.name} is missing"
    meta = nbformat.read(target, as_version=4).metadata.get(META_KEY, {})
    if "package_digest" not in meta:
        return f"{target.name} records no package digest (rendered by an older command)"
    now = package_files(source)
    if meta["package_digest"] == package_digest(now):
        return None
    then = meta.get("package_files", {})
    changed = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
    shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
    return f"{target.name} was rendered from older code (changed since: {shown})"


def main(argv: list[str] | None = None) -> int:
    """``python -m chainer_nets.notebook_render render|check [NAME ...]``."""
    p = argparse.ArgumentParser(prog="python -m chainer_nets.notebook_render")
    p.add_argument("action", choices=["render", "check"])
    p.add_argument("names", nargs="*", help="e.g. 08_resnet (default: all notebooks)")
    a = p.parse_args(argv)
    sources = notebook_sources()
    if a.names:
        sources = [s for s in sources if s.stem in a.names or s.name in a.names]
        unknown = set(a.names) - {s.stem for s in sources} - {s.name for s in sources}
        if unknown:
            print(f"no notebook named {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
    bad = 0
    for s in sources:
        if a.action == "render":
            render(s)
        else:
            for msg in (out_of_sync(s), stale(s)):
                if msg:
                    print(msg)
                    bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
