"""chainer_nets.results on a small synthetic run directory."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from chainer_nets import results  # noqa: E402


def _write_run(root: Path, name: str, model: str, acc: float, finished: str) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": {"model": model}}))
    log = [
        {
            "epoch": e,
            "main/loss": 2.0 / e,
            "main/accuracy": 0.3 * e,
            "test/main/loss": 2.2 / e,
            "test/main/accuracy": 0.25 * e,
        }
        for e in (1, 2, 3)
    ]
    (run / "log").write_text(json.dumps(log))
    (run / "result.json").write_text(
        json.dumps(
            {
                "model": model,
                "test_accuracy": acc,
                "epochs": 164.0,
                "device": "GPU: Test GPU",
                "wall_seconds": 3 * 3600 + 120,
                "finished": finished,
                "command": f"python -m chainer_nets.train --model {model} --device @cupy:0",
            }
        )
    )
    return run


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    _write_run(tmp_path, "resnet110", "resnet110", 93.01, "2024-01-01T00:00:00+00:00")
    _write_run(tmp_path, "resnet110_again", "resnet110", 93.42, "2024-02-01T00:00:00+00:00")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.json").write_text("{}")
    return tmp_path


def test_load_and_list(root: Path) -> None:
    runs = results.list_runs(root)
    assert [r.path.name for r in runs] == ["resnet110", "resnet110_again"]
    run = results.load_run(root / "resnet110")
    assert run.model == "resnet110" and run.finished and len(run.log) == 3


def test_find_run_latest_or_none(root: Path) -> None:
    run = results.find_run("resnet110", root)
    assert run is not None and run.result["test_accuracy"] == 93.42
    assert results.find_run("wrn28_10", root) is None
    assert results.find_run("resnet110", root / "missing") is None


def test_markdown_table(root: Path) -> None:
    table = results.markdown_table(["resnet110", "wrn28_10"], root)
    lines = table.splitlines()
    assert lines[0].startswith("| model | paper acc | 2016 Chainer acc | ours (last epoch)")
    assert "| resnet110 | 93.57 | 93.34 | 93.42 | 164.0 | GPU: Test GPU | 3 h 02 min |" in table
    assert "| wrn28_10 | 96.00 | 95.76 | not yet reproduced |" in table
    assert "--model wrn28_10 --device @cupy:0 --out results/wrn28_10" in table
    only = results.markdown_table(None, root, runs_only=True)
    assert len(only.splitlines()) == 3


def test_budget_run_is_kept_apart(root: Path) -> None:
    """A shortened run is never the reproduction: not in the "ours" column, in its own table."""
    run = _write_run(root, "resnet110_budget", "resnet110", 80.5, "2025-01-01T00:00:00+00:00")
    (run / "config.json").write_text(
        json.dumps({"config": {"model": "resnet110", "epochs": 15.0, "seed": 1}})
    )
    assert not results.load_run(run).full_recipe
    assert results.find_run("resnet110", root).result["test_accuracy"] == 93.42
    assert "80.50" not in results.markdown_table(["resnet110"], root)
    assert [r.path.name for r in results.budget_runs(None, root)] == ["resnet110_budget"]
    assert results.budget_runs("wrn28_10", root) == []
    table = results.budget_table("resnet110", root)
    assert "| resnet110_budget | resnet110 | --epochs 15 | 1 | 80.50 |" in table
    (run / "config.json").write_text(json.dumps({"config": {"model": "resnet110"}}))
    assert results.find_run("resnet110", root).result["test_accuracy"] == 80.5  # now the latest


def test_budget_twins_read_by_seed(tmp_path: Path) -> None:
    for seed, acc in ((2, 0.81), (1, 0.8)):
        log = [{"epoch": 1, "test/main/accuracy": acc}]
        (tmp_path / f"resnet20_budget15_seed{seed}.json").write_text(
            json.dumps({"seed": seed, "test_accuracy": acc, "log": log})
        )
    (tmp_path / "resnet20_broken.json").write_text("{")
    (tmp_path / "resnet110_budget15_seed1.json").write_text(json.dumps({"seed": 1, "log": [{}]}))
    twins = results.budget_twins("resnet20", tmp_path)
    assert [t["seed"] for t in twins] == [1, 2] and twins[0]["test_accuracy"] == 0.8
    assert results.budget_twins("wrn28_10", tmp_path) == []


def test_impl2016_numbers() -> None:
    assert results.impl2016_accuracy("resnet110") == 93.34
    assert results.impl2016_accuracy("preresnet164") == 94.39
    assert results.impl2016_accuracy("wrn28_10") == 95.76
    assert results.impl2016_accuracy("resnet20") is None


def test_plot_log(root: Path) -> None:
    fig = results.plot_run(results.find_run("resnet110", root))
    assert len(fig.axes) == 2 and fig.axes[1].lines


def test_cli(root: Path, capsys: pytest.CaptureFixture) -> None:
    assert results.main(["--root", str(root), "--runs"]) == 0
    out = capsys.readouterr().out
    assert "resnet110" in out and "wrn28_10" not in out


def test_results_dir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(results.RESULTS_ENV, str(tmp_path))
    assert results.results_dir() == tmp_path
