"""The training CLI on real CIFAR-10: logs, results, resume, evaluation and bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import chainer
import numpy as np
import pytest

from chainer_nets import evaluate as cevaluate
from chainer_nets.train import TrainConfig, main, train

SMALL = dict(train_subset=256, test_subset=200, batch_size=64, progress=False, print_report=False)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chainer_nets.train", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def test_list_shows_every_model() -> None:
    r = _cli("--list")
    assert r.returncode == 0, r.stderr
    for name in ("resnet20", "resnet1202", "preresnet1001", "wrn28_10", "wrn28_10_dropout"):
        assert name in r.stdout
    assert "36.48M" in r.stdout and "Nesterov" in r.stdout


def test_cli_run_on_real_cifar_subset(cifar, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = _cli(
        "--model",
        "resnet20",
        "--epochs",
        "2",
        "--train-subset",
        "512",
        "--test-subset",
        "256",
        "--val-split",
        "500",
        "--out",
        str(out),
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    log = json.loads((out / "log").read_text())
    assert [e["epoch"] for e in log] == [1, 2]
    for e in log:
        assert 0.5 < e["main/loss"] < 5 and math.isfinite(e["test/main/loss"])
        for k in ("main/accuracy", "val/main/accuracy", "test/main/accuracy"):
            assert 0.0 <= e[k] <= 1.0
        assert any(e["lr"] == pytest.approx(v) for v in (0.1, 0.01, 0.001))
    assert log[-1]["iteration"] == 2 * 512 // 128
    res = json.loads((out / "result.json").read_text())
    assert res["model"] == "resnet20" and res["parameters"] == 269_722
    assert 5.0 <= res["test_accuracy"] <= 60.0 and 5.0 <= res["val_accuracy"] <= 60.0
    assert res["train_images_per_second"] > 0 and res["device"].startswith("CPU")
    assert res["command"].startswith("python -m chainer_nets.train --model resnet20")
    assert res["recipe"] == "resnet" and "chainer" in res["versions"]
    for f in ("loss.png", "accuracy.png", "config.json", "model.npz"):
        assert (out / f).stat().st_size > 0
    # the saved model scores what the run reported
    ev = cevaluate.evaluate_run(out)
    assert ev["test_accuracy"] == res["test_accuracy"]


def test_interrupted_then_resumed_equals_uninterrupted(cifar, tmp_path: Path) -> None:
    full = train(TrainConfig(model="resnet20", epochs=3, out=str(tmp_path / "full"), **SMALL))
    first = train(
        TrainConfig(model="resnet20", epochs=3, out=str(tmp_path / "cut"), **SMALL), stop_at_epoch=1
    )
    assert first == {"interrupted_at_iteration": 4}
    assert not (tmp_path / "cut" / "result.json").exists()
    resumed = train(
        TrainConfig(model="resnet20", epochs=3, out=str(tmp_path / "cut"), resume=True, **SMALL)
    )
    a = np.load(tmp_path / "full" / "model.npz")
    b = np.load(tmp_path / "cut" / "model.npz")
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert resumed["test_accuracy"] == full["test_accuracy"]
    log_a = json.loads((tmp_path / "full" / "log").read_text())
    log_b = json.loads((tmp_path / "cut" / "log").read_text())
    assert [e["main/loss"] for e in log_a] == [e["main/loss"] for e in log_b]
    assert [e["lr"] for e in log_a] == [e["lr"] for e in log_b]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet21"], "unknown model 'resnet21'"),
        (["--model", "resnet20", "--epochs", "-1"], "--epochs must be > 0"),
        (["--model", "resnet20", "--batch-size", "0"], "--batch-size must be > 0"),
        (["--model", "resnet20", "--lr", "0"], "--lr must be > 0"),
        (["--model", "resnet20", "--val-split", "50000"], "--val-split"),
        (["--model", "resnet20", "--device", "@cupy:0"], "NVIDIA GPU"),
        (["--model", "resnet20", "--device", "banana"], "invalid device"),
        (["--model", "resnet20", "--resume"], "nothing to resume"),
        ([], "--model is required"),
    ],
)
def test_bad_input_one_message_nonzero_exit_nothing_written(
    tmp_path: Path, capsys, args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    code = main([*args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("error:") == 1
    assert not out.exists()


def test_bad_option_value_is_rejected_by_the_parser(tmp_path: Path) -> None:
    r = _cli("--model", "resnet20", "--dtype", "float64", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "invalid choice" in r.stderr
    assert not (tmp_path / "o").exists()


def test_unreadable_data_dir(tmp_path: Path) -> None:
    r = _cli("--model", "resnet20", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "no CIFAR-10 in" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_offline_without_data_says_where_it_looked(tmp_path: Path) -> None:
    env = {
        "CHAINER_DATASET_ROOT": str(tmp_path / "empty"),
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
    }
    r = _cli("--model", "resnet20", "--out", str(tmp_path / "o"), env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "CIFAR-10 is not in Chainer's cache" in r.stderr and str(tmp_path / "empty") in r.stderr
    assert not (tmp_path / "o").exists()


def test_existing_run_is_not_overwritten(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text('{"kept": true}')
    assert main(["--model", "resnet20", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert json.loads((out / "result.json").read_text()) == {"kept": True}


def test_resume_with_different_options_is_refused(cifar, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    train(TrainConfig(model="resnet20", epochs=2, out=str(out), **SMALL), stop_at_epoch=1)
    before = sorted(p.name for p in out.iterdir())
    assert (
        main(
            [
                "--model",
                "resnet20",
                "--epochs",
                "2",
                "--train-subset",
                "256",
                "--test-subset",
                "200",
                "--batch-size",
                "32",
                "--out",
                str(out),
                "--resume",
            ]
        )
        == 2
    )
    assert "batch_size" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_mixed16_trains_with_float16_weights(cifar, tmp_path: Path) -> None:
    # NumPy has no fast float16 matrix product, so this CPU check stays tiny.
    cfg = TrainConfig(
        model="resnet20",
        epochs=1,
        dtype="mixed16",
        out=str(tmp_path / "m"),
        train_subset=64,
        test_subset=64,
        batch_size=32,
        progress=False,
        print_report=False,
    )
    res = train(cfg)
    assert res["dtype"] == "mixed16" and math.isfinite(res["test_loss"])
    w = np.load(tmp_path / "m" / "model.npz")
    assert w["conv1/W"].dtype == np.float16
    assert chainer.config.dtype == np.float32  # the global configuration is left as it was
