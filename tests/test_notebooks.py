"""Every notebook in notebooks/: its rendered .ipynb matches its .py, and it runs in quick mode.

Execution needs CIFAR-10 (see data/README.md); without it these tests skip, unless
CHAINER_NETS_REQUIRE_DATA=1 (as in CI), where they fail.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from chainer_nets import data as cdata
from chainer_nets import notebook as nbh

SOURCES = nbh.notebook_sources()
IDS = [s.stem for s in SOURCES]


def _has_cifar10() -> bool:
    root = os.environ.get("CHAINER_DATASET_ROOT")
    if root and (Path(root) / "pfnet" / "chainer" / "cifar" / "cifar-10.npz").is_file():
        return True
    return cdata.chainer_cache_path().is_file()


def _need_data() -> None:
    if _has_cifar10():
        return
    msg = (
        "CIFAR-10 not found in Chainer's cache "
        f"({cdata.chainer_cache_path()}); run once with internet access, or set "
        "CHAINER_DATASET_ROOT to a folder holding pfnet/chainer/cifar/cifar-10.npz "
        "(see data/README.md)"
    )
    if os.environ.get("CHAINER_NETS_REQUIRE_DATA") == "1":
        pytest.fail(msg + " [CHAINER_NETS_REQUIRE_DATA=1]")
    pytest.skip(msg)


def test_notebooks_are_discovered() -> None:
    assert {"08_resnet", "11_preact_resnet", "15_wide_resnet"} <= set(IDS)


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_ipynb_matches_py(source: Path) -> None:
    """The committed .ipynb has exactly the cells of its .py (re-render if this fails)."""
    msg = nbh.out_of_sync(source)
    assert msg is None, f"{msg}; run: python -m chainer_nets.notebook render {source.stem}"


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_ipynb_has_outputs_and_stays_small(source: Path) -> None:
    """The rendered notebook was executed (has outputs, no errors) and is reviewable in size."""
    import nbformat

    target = source.with_suffix(".ipynb")
    nb = nbformat.read(target, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert outputs, f"{target.name} has no outputs: render it"
    assert not [o for o in outputs if o.output_type == "error"]
    assert target.stat().st_size < 300_000


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_parameters_cell_is_quick(source: Path) -> None:
    """The committed parameters select the quick CPU mode."""
    text = source.read_text()
    assert '# %% tags=["parameters"]' in text
    assert re.search(r'^MODE = "quick"$', text, re.M)
    assert re.search(r'^DEVICE = "@numpy"$', text, re.M)


@pytest.mark.parametrize("source", SOURCES, ids=IDS)
def test_notebook_executes_in_quick_mode(source: Path) -> None:
    """Run the .py top to bottom in a fresh kernel (any failing assert fails the test)."""
    _need_data()
    pytest.importorskip("nbclient")
    pytest.importorskip("jupytext")
    pytest.importorskip("ipykernel")
    nb = nbh.execute(source, timeout=400)
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert not errors
