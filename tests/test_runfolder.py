"""Every way a run can fail ends in one line and the right exit status, losing nothing.

Exit 2: bad input (checked before anything is written); 1: failure while running,
naming the last good snapshot; 130: Ctrl-C. Plus the folder's lock, atomic writes,
the divergence check's interval, the device streams and the device constants.
"""

from __future__ import annotations

import errno
import fcntl
import json
import types
from pathlib import Path

import chainer
import numpy as np
import pytest
import tiny_run

from chainer_nets import data as cdata
from chainer_nets import evaluate as cevaluate
from chainer_nets import extensions as ext
from chainer_nets import runfolder as rf
from chainer_nets.train import main


@pytest.fixture(autouse=True, scope="module")
def _tiny_model():
    """The tiny model and recipe, known to the training module for this module's tests."""
    with pytest.MonkeyPatch.context() as mp:
        tiny_run.install(mp.setattr)
        yield


def _main(out: Path, *extra: str) -> int:
    return main([*tiny_run.ARGS, "--out", str(out), *extra])


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "inf"], "--epochs must be > 0 and finite"),
        (["--epochs", "nan"], "--epochs must be > 0 and finite"),
        (["--lr", "inf"], "--lr must be > 0 and finite"),
        (["--seed", "4294967296"], "--seed must be in 0..4294967295"),
        (["--seed", "-1"], "--seed must be in"),
        (["--batch-size", "1000"], "--batch-size 1000 is larger than the 64 training images"),
        (["--train-subset", "100000"], "--train-subset 100000 is more than the 50000"),
        (["--val-split", "49990"], "--train-subset 64 is more than the 10 training images left"),
        (["--test-subset", "20000"], "--test-subset 20000 is more than the 10000 test images"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    cifar, tmp_path: Path, capsys, args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    code = main([*tiny_run.ARGS, *args, "--out", str(out)])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and message in line, line
    assert not out.exists()


def test_val_split_leaving_less_than_a_batch(cifar, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["--model", tiny_run.MODEL, "--val-split", "49990", "--out", str(out)])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "larger than the 10 training images left after --val-split" in line
    assert not out.exists()


def test_out_under_a_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "f").write_text("a file")
    assert _main(tmp_path / "f" / "sub") == 2
    assert "is under a file" in _one_error_line(capsys.readouterr().err)


def test_negative_labels_are_refused() -> None:
    arrays = {
        "train_x": np.zeros((50000, 3072), np.uint8),
        "train_y": np.zeros(50000, np.int64),
        "test_x": np.zeros((10000, 3072), np.uint8),
        "test_y": np.zeros(10000, np.int64),
    }
    arrays["train_y"][7] = -1
    with pytest.raises(cdata.DataError, match="labels in 0..9"):
        cdata._checked(arrays, "test")


def test_evaluate_on_a_damaged_config(tmp_path: Path, capsys) -> None:
    (tmp_path / rf.CONFIG_FILE).write_text('{"config": {"mod')
    assert cevaluate.main([str(tmp_path)]) == 2
    assert "damaged" in _one_error_line(capsys.readouterr().err)


def test_a_busy_folder_names_the_other_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with open(out / rf.LOCK_FILE, "w") as held:
        held.write("pid 4242: python -m chainer_nets.train --model resnet20\n")
        held.flush()
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert _main(out) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert "in use by another run" in line and "pid 4242" in line
        assert _main(out, "--resume") == 2
    assert sorted(p.name for p in out.iterdir()) == [rf.LOCK_FILE]


def test_lock_is_taken_before_the_empty_check(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with rf.RunLock(out, "first"):
        with pytest.raises(rf.UsageError, match="pid .*: first"):
            rf.RunLock(out, "second").acquire()
    rf.RunLock(out, "third").acquire().release()  # free again once released


def test_divergence_names_the_iteration_and_gives_advice(cifar, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert _main(out, "--lr", "1e6") == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "training diverged" in line and "at iteration" in line and "smaller --lr" in line
    assert "last good snapshot" in line
    for snap in rf.list_snapshots(out):  # no snapshot holds a non-finite number
        with np.load(snap) as z:
            assert all(np.isfinite(z[k]).all() for k in z.files if z[k].dtype.kind == "f")


def test_ctrl_c_exits_130_with_a_resume_hint(cifar, tmp_path: Path, capsys, monkeypatch) -> None:
    real = ext.ScheduledUpdater.update_core

    def update_core(self) -> None:
        if self.iteration == 6:
            raise KeyboardInterrupt
        real(self)

    monkeypatch.setattr(ext.ScheduledUpdater, "update_core", update_core)
    out = tmp_path / "run"
    assert _main(out) == 130
    line = _one_error_line(capsys.readouterr().err)
    assert (
        "interrupted at iteration 6" in line and "snapshot_epoch_1" in line and "--resume" in line
    )
    assert not (out / rf.RESULT_FILE).exists()


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_out_of_space_at_the_end_keeps_the_snapshots(
    cifar, tmp_path: Path, capsys, monkeypatch
) -> None:
    real = chainer.serializers.save_npz

    def save_npz(file, obj, **kw) -> None:
        if isinstance(obj, chainer.training.Trainer):
            return real(file, obj, **kw)
        file.write(b"PK\x03\x04 half a zip")
        _no_space()

    monkeypatch.setattr(chainer.serializers, "save_npz", save_npz)
    out = tmp_path / "run"
    assert _main(out) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "out of space" in line and "snapshot_epoch_6" in line
    assert not (out / rf.MODEL_FILE).exists() and not (out / rf.RESULT_FILE).exists()
    assert not list(out.glob("*.tmp"))
    monkeypatch.setattr(chainer.serializers, "save_npz", real)
    assert _main(out, "--resume") == 0  # space freed: the run completes from its snapshot
    assert json.loads((out / rf.RESULT_FILE).read_text())["iterations"] == 24


def test_out_of_space_at_the_start_does_not_jam_the_folder(
    cifar, tmp_path: Path, capsys, monkeypatch
) -> None:
    real = rf.write_atomic

    def write_atomic(path: Path, write) -> None:
        real(path, lambda tmp: (tmp.write_bytes(b""), _no_space()))

    monkeypatch.setattr(rf, "write_atomic", write_atomic)
    out = tmp_path / "run"
    assert _main(out) == 1
    assert "out of space" in _one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in out.iterdir()) == [rf.LOCK_FILE]
    assert not rf.holds_run(out)  # a new run may start here


def test_all_snapshots_unloadable_is_one_message(cifar, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    from chainer_nets.train import TrainConfig, train

    cfg = TrainConfig(
        model=tiny_run.MODEL, out=str(out), train_subset=64, test_subset=32, progress=False,
        print_report=False,
    )  # fmt: skip
    train(cfg, stop_at_epoch=2)
    for snap in rf.list_snapshots(out):
        snap.write_bytes(b"not a snapshot")
    assert _main(out, "--resume") == 2
    err = capsys.readouterr().err
    assert err.count("warning: cannot load") == 2
    assert "no snapshot in" in err.splitlines()[-1] and "error:" in err.splitlines()[-1]
    for snap in rf.list_snapshots(out):
        snap.unlink()
    assert _main(out, "--resume") == 2  # removed snapshots: no silent restart from zero
    assert "snapshots were removed" in _one_error_line(capsys.readouterr().err)


def test_nonfinite_check_runs_every_n_iterations_and_at_epoch_ends() -> None:
    """The check reads the device once per check, not per iteration and parameter."""
    check = ext.NonFiniteCheck(every=100)
    check.all_finite = lambda trainer: True
    updater = types.SimpleNamespace(iteration=0, is_new_epoch=False)
    trainer = types.SimpleNamespace(updater=updater)
    for it in range(1, 251):
        updater.iteration, updater.is_new_epoch = it, it % 30 == 0
        check(trainer)
    # epoch ends 30, 60, ..., 240 (8) and iterations 100, 200 (2)
    assert check.checks == 10


def test_device_stream_is_reseeded_from_the_iteration() -> None:
    """On a GPU, CuPy's stream (whose state cannot be saved) is re-seeded from (seed, iteration)."""
    seeds: list[int] = []
    fake_xp = types.SimpleNamespace(random=types.SimpleNamespace(seed=seeds.append))
    device = types.SimpleNamespace(xp=fake_xp)
    conv = cdata.AugmentConverter([0, 0, 0], [1, 1, 1], augment=True)
    keeper = ext.RandomStateKeeper(conv, device, seed=3)
    keeper(types.SimpleNamespace(updater=types.SimpleNamespace(iteration=40)))
    keeper.reseed_device(40)
    keeper.reseed_device(41)
    assert seeds[0] == seeds[1] != seeds[2]
    cpu = ext.RandomStateKeeper(conv, chainer.get_device("@numpy"), seed=3)
    cpu.reseed_device(40)  # nothing to do, and CuPy is not imported


def test_normalisation_constants_are_sent_to_the_device_once() -> None:
    conv = cdata.AugmentConverter([120.0, 110.0, 100.0], [60.0, 61.0, 62.0], augment=False)
    batch = [(np.full((3, 32, 32), 7, np.uint8), np.int32(1))] * 2
    first, _ = conv(batch, "@numpy")
    conv.mean = conv.std = None  # a per-batch copy from the host would now fail
    second, _ = conv(batch, "@numpy")
    np.testing.assert_array_equal(first, second)


def test_timing_synchronises_only_at_epoch_boundaries(cifar, tmp_path: Path, monkeypatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(rf, "synchronize", lambda device: calls.append(1))
    out = tmp_path / "run"
    assert main([*tiny_run.ARGS, "--batch-size", "4", "--epochs", "2", "--out", str(out)]) == 0
    result = json.loads((out / rf.RESULT_FILE).read_text())
    assert result["iterations"] == 32 and result["train_images_per_second"] > 0
    assert len(calls) == 4  # open and close of each of the 2 epochs, not one per step
