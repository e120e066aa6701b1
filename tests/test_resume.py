"""Resume is exact at every point of the schedule, after kills and damaged snapshots too.

A tiny model with a short warm-up recipe (tests/tiny_run.py) keeps these runs to seconds:
4 iterations an epoch, warm-up to iteration 6, rate steps at 12 and 18, 24 in all.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tiny_run

from chainer_nets import runfolder as rf
from chainer_nets.train import TrainConfig, main, train


@pytest.fixture(autouse=True, scope="module")
def _tiny_model():
    """The tiny model and recipe, known to the training module for this module's tests."""
    with pytest.MonkeyPatch.context() as mp:
        tiny_run.install(mp.setattr)
        yield


SMALL = dict(train_subset=64, test_subset=32, progress=False, print_report=False)
SCRIPT = str(Path(tiny_run.__file__))


def _cfg(out: Path, **kw) -> TrainConfig:
    return TrainConfig(model=tiny_run.MODEL, out=str(out), **{**SMALL, **kw})


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = np.load(a / rf.MODEL_FILE), np.load(b / rf.MODEL_FILE)
    assert sorted(wa.files) == sorted(wb.files)
    for k in wa.files:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


@pytest.fixture(scope="module")
def full(cifar, tmp_path_factory) -> Path:
    """The uninterrupted run, in this process."""
    out = tmp_path_factory.mktemp("full") / "run"
    train(_cfg(out))
    return out


@pytest.mark.parametrize(
    "stop_at, where", [(1, "during warm-up"), (2, "after warm-up"), (4, "after an lr step")]
)
def test_resume_is_bitwise_exact(full: Path, tmp_path: Path, stop_at: int, where: str) -> None:
    cut = tmp_path / "cut"
    assert train(_cfg(cut), stop_at_epoch=stop_at) == {"interrupted_at_iteration": 4 * stop_at}
    resumed = train(_cfg(cut, resume=True))
    _same_weights(full, cut)
    log_a = json.loads((full / rf.LOG_FILE).read_text())
    log_b = json.loads((cut / rf.LOG_FILE).read_text())
    assert [e["lr"] for e in log_a] == [e["lr"] for e in log_b], where
    assert [e["main/loss"] for e in log_a] == [e["main/loss"] for e in log_b], where
    first = log_b[stop_at - 1]["elapsed_time"]
    assert resumed["wall_seconds"] >= round(first, 1)  # every segment counts
    assert resumed["train_images_per_second"] > 0


def test_newest_snapshot_damaged_falls_back_and_stays_exact(
    full: Path, tmp_path: Path, capsys
) -> None:
    cut = tmp_path / "cut"
    train(_cfg(cut), stop_at_epoch=4)
    newest = cut / rf.snapshot_name(4)
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a crash of the disk
    capsys.readouterr()
    train(_cfg(cut, resume=True))
    err = capsys.readouterr().err
    assert f"cannot load {newest}" in err and "falling back to snapshot_epoch_3" in err
    assert [line for line in err.splitlines() if line.strip()] == [err.strip()]  # one line
    _same_weights(full, cut)


def test_user_files_are_neither_loaded_nor_deleted(full: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    train(_cfg(cut), stop_at_epoch=2)
    (cut / "snapshot_epoch_9.bak").write_bytes(b"the user's")
    (cut / "snapshot_epoch_1.bak").write_bytes(b"the user's")
    (cut / "notes.txt").write_text("mine")
    (cut / "model.npz.tmp").write_bytes(b"half")  # left by a killed write
    (cut / "snapshot_epoch_2.tmp").write_bytes(b"half")
    (cut / "logabcd_123").mkdir()  # Chainer LogReport's temporary folder
    (cut / "logabcd_123" / "log.json").write_text("[")
    train(_cfg(cut, resume=True))
    _same_weights(full, cut)
    names = sorted(p.name for p in cut.iterdir())
    assert "snapshot_epoch_9.bak" in names and "snapshot_epoch_1.bak" in names
    assert "notes.txt" in names
    assert [n for n in names if n.startswith("snapshot_epoch_") and "." not in n] == [
        "snapshot_epoch_5",
        "snapshot_epoch_6",
    ]
    assert not [n for n in names if n.endswith(".tmp") or n.startswith("logabcd")]


def test_resume_of_a_finished_run_changes_nothing(full: Path, capsys) -> None:
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in full.iterdir()}
    code = main([*tiny_run.ARGS, "--out", str(full), "--resume"])
    out = capsys.readouterr().out
    assert code == 0 and "finished run, nothing to resume" in out
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in full.iterdir()} == before


def _start(out: Path, resume: bool) -> subprocess.Popen:
    args = [sys.executable, SCRIPT, *tiny_run.ARGS, "--out", str(out)]
    return subprocess.Popen(
        [*args, "--resume"] if resume else args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def test_kill_at_random_moments_always_resumes_equal(cifar, tmp_path: Path) -> None:
    """A few `kill -9`s at random moments of real processes; the last resume ends equal."""
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    ref = tmp_path / "ref"
    t0 = time.monotonic()
    assert _start(ref, False).wait(timeout=600) == 0
    whole = time.monotonic() - t0  # an uninterrupted run, start-up included
    cut, kills = tmp_path / "cut", 0
    for _ in range(3):
        p = _start(cut, (cut / rf.CONFIG_FILE).is_file())
        # a moment inside the run (a first, uninterrupted-length process is always cut)
        time.sleep(rng.uniform(0.15, 0.6) * whole)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.wait(timeout=60)
    last = _start(cut, (cut / rf.CONFIG_FILE).is_file())
    assert last.wait(timeout=600) == 0, f"seed {seed}: {last.stderr.read()}"
    _same_weights(ref, cut)
    assert kills >= 1, f"seed {seed}: no process was killed"
