"""The README tells the truth about the repository: models, notebooks, the test command."""

from __future__ import annotations

import re
from pathlib import Path

from chainer_nets import list_models

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_registered_model_is_listed() -> None:
    missing = [i.name for i in list_models() if f"`{i.name}`" not in README]
    assert not missing, f"README's paper table lacks {missing}"


def test_every_notebook_is_linked_and_every_link_exists() -> None:
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    linked = sorted(set(re.findall(r"notebooks/([0-9]{2}_\w+\.ipynb)", README)))
    assert linked == notebooks


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_budget_runs_table_is_the_generated_one() -> None:
    """The README's budget-run table is exactly what ``python -m chainer_nets.results --budget``
    prints from ``results/``, so it cannot drift from the recorded runs."""
    from chainer_nets import results

    if results.budget_runs():
        assert results.budget_table() in README
