"""Data-parallel training with ChainerMN on the CPU, through ``mpiexec -n 2`` (MPICH wheel).

The tiny model and warm-up recipe of tests/tiny_run.py (64 images, global batch 16, 4
iterations an epoch, 24 in all) keep every MPI run to seconds of training. Skips when
mpi4py or mpiexec is missing, unless CHAINER_NETS_REQUIRE_MPI=1 (CI), where it fails.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import chainer
import numpy as np
import pytest
import tiny_run

from chainer_nets import distributed
from chainer_nets import runfolder as rf
from chainer_nets.runfolder import UsageError
from chainer_nets.train import TrainConfig, main, train

HERE = Path(__file__).resolve().parent
SCRIPT = str(HERE / "mpi_run.py")
ARGS = [*tiny_run.ARGS, "--communicator", "naive"]
#: Two ranks against one process: the same images, crops, initial weights and schedule, but
#: float32 sums taken in another order (two half-batch means averaged by an all-reduce;
#: ChainerMN's BN variance as E[x^2] - E[x]^2 of all-reduced means), which training then
#: amplifies: after 4 steps every weight agrees to 1e-4 of its array's largest value (after
#: 8 steps at lr 0.1 we measured up to 7e-4), never bitwise.
RTOL_4_STEPS = 1e-4
#: ChainerMN's synchronised BN scales the running variance's batch term by m/(m-1) with m
#: the images x pixels of one *rank*, one process by that of the whole batch: a relative
#: difference below 1/(m-1) <= 1/511 here (8 images of 8x8 in the last stage).
RTOL_RUNNING_VAR = 1 / 511


def _mpiexec() -> str | None:
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.is_file() else shutil.which("mpiexec")


@pytest.fixture(scope="module")
def mpiexec() -> str:
    """The MPI launcher; skips without MPI (fails when CHAINER_NETS_REQUIRE_MPI=1, as in CI)."""
    launcher = _mpiexec()
    if launcher is None or importlib.util.find_spec("mpi4py") is None:
        why = "needs mpi4py and mpiexec: pip install -e '.[mpi]'"
        if os.environ.get("CHAINER_NETS_REQUIRE_MPI") == "1":
            pytest.fail(why + " (CHAINER_NETS_REQUIRE_MPI=1)")
        pytest.skip(why)
    return launcher


@pytest.fixture(autouse=True, scope="module")
def _tiny_model():
    """The tiny model and recipe, known to the training module for this module's tests."""
    with pytest.MonkeyPatch.context() as mp:
        tiny_run.install(mp.setattr)
        yield


def _env(**extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "MPLBACKEND": "Agg", **extra}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _mpi(launcher: str, n: int, *args: str, pids: Path | None = None) -> subprocess.Popen:
    env = _env(**({"MPI_TEST_PIDS": str(pids)} if pids else {}))
    cmd = [launcher, "-n", str(n), sys.executable, SCRIPT, *ARGS, *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(launcher: str, n: int, *args: str) -> subprocess.CompletedProcess:
    p = _mpi(launcher, n, *args)
    out, err = p.communicate(timeout=300)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _weights(run: Path) -> dict:
    with np.load(run / rf.MODEL_FILE) as w:
        return {k: w[k] for k in w.files}


@pytest.fixture(scope="module")
def two_ranks(mpiexec: str, cifar, tmp_path_factory) -> Path:
    """An uninterrupted 2-rank run (per-rank BN statistics)."""
    out = tmp_path_factory.mktemp("mpi") / "full"
    r = _run(mpiexec, 2, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


def test_two_ranks_equal_one_process(mpiexec: str, cifar, tmp_path: Path) -> None:
    """Global batch 16 over 2 ranks (8 each, synchronised BN) = one process with batch 16."""
    r = _run(mpiexec, 2, "--epochs", "1", "--sync-bn", "--out", str(tmp_path / "two"))
    assert r.returncode == 0, r.stderr
    one = tmp_path / "one"
    with chainer.using_config("cpu_fast", False):  # as the ranks with --sync-bn run
        train(TrainConfig(model=tiny_run.MODEL, out=str(one), epochs=1, train_subset=64,
                          test_subset=32, progress=False, print_report=False))  # fmt: skip
    a, b = _weights(one), _weights(tmp_path / "two")
    assert sorted(a) == sorted(b)
    for k in a:
        if k.endswith("avg_var"):
            np.testing.assert_allclose(b[k], a[k], rtol=RTOL_RUNNING_VAR, err_msg=k)
        else:
            scale = float(np.abs(a[k]).max()) or 1.0
            assert float(np.abs(a[k] - b[k]).max()) <= RTOL_4_STEPS * scale, k
    assert any(not np.array_equal(a[k], b[k]) for k in a)  # as said above: not bitwise
    res = rf.read_json(tmp_path / "two" / rf.RESULT_FILE)
    assert res["processes"] == 2 and res["iterations"] == 4 and res["sync_bn"] is True
    assert res["test_images"] == 32  # scored over both ranks' parts


def _wait_for_lock(out: Path, pid: int, seconds: float) -> None:
    """Wait until nobody holds ``out``'s run lock; after ``seconds`` end ``pid`` (SIGKILL reaches
    every thread of it) and wait again. A process whose main thread has exited can still hold
    the lock through a thread left blocked in MPI (its ``/proc`` state then reads as a zombie),
    so the lock itself is what is waited for, as a user waits for a job to end."""
    deadline = time.monotonic() + seconds
    while rf.lock_holder(out) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if rf.lock_holder(out) is not None:  # a rank left hanging: end it, as a user would
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while rf.lock_holder(out) is not None and time.monotonic() < deadline:
            time.sleep(0.1)


def test_kill_one_rank_then_resume_equals_uninterrupted(
    mpiexec: str, two_ranks: Path, tmp_path: Path
) -> None:
    """kill -9 of rank 1 stops the job; the last snapshot resumes on 2 ranks to the same end."""
    out, pids = tmp_path / "cut", tmp_path / "pids"
    pids.mkdir()
    p = _mpi(mpiexec, 2, "--out", str(out), pids=pids)
    deadline = time.monotonic() + 240
    while not (out / rf.snapshot_name(2)).is_file() and p.poll() is None:
        assert time.monotonic() < deadline, "no snapshot after 240 s"
        time.sleep(0.2)
    os.kill(int((pids / "rank1.pid").read_text()), signal.SIGKILL)
    out_text, err = p.communicate(timeout=120)
    assert p.returncode != 0
    said = out_text + err  # MPICH's launcher reports on its stdout
    assert "BAD TERMINATION" in said and "signal 9" in said, said[-2000:]
    assert not (out / rf.RESULT_FILE).exists()
    snaps = rf.list_snapshots(out)
    assert snaps and rf.snapshot_epoch(snaps[0].name) >= 2
    with np.load(snaps[0]) as s:  # intact: a complete archive with the weights and the state
        assert s["updater/iteration"] == 4 * rf.snapshot_epoch(snaps[0].name)
        assert s["extensions/rng/numpy_keys"].shape == (2, 624)

    # another number of processes is refused before anything is touched (a 1-process MPI job)
    r1 = subprocess.run(
        [sys.executable, SCRIPT, *ARGS, "--out", str(out), "--resume"],
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r1.returncode == 2, r1.stderr
    assert "trained on 2 process(es)" in r1.stderr and "mpiexec -n 2" in r1.stderr

    # the launcher returns before rank 0 (which holds the run folder's lock) has exited: wait
    # for it, as a user waits for a job to end before resuming it
    _wait_for_lock(out, int((pids / "rank0.pid").read_text()), 120)
    r = _run(mpiexec, 2, "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    a, b = _weights(two_ranks), _weights(out)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # same ranks, same sums: bitwise
    assert (
        rf.read_json(out / rf.RESULT_FILE)["test_accuracy"]
        == rf.read_json(two_ranks / rf.RESULT_FILE)["test_accuracy"]
    )


def test_only_rank_0_writes_the_run_folder(two_ranks: Path) -> None:
    """One log, one result, the plots and the snapshots; the log holds the global scores."""
    names = sorted(p.name for p in two_ranks.iterdir())
    assert names == sorted(
        ["accuracy.png", "config.json", "log", "loss.png", "model.npz", "result.json",
         rf.LOCK_FILE, "snapshot_epoch_5", "snapshot_epoch_6"]
    )  # fmt: skip
    log = rf.read_json(two_ranks / rf.LOG_FILE)
    assert [e["iteration"] for e in log] == [4, 8, 12, 16, 20, 24]
    # 32 test images: a global per-image accuracy is a multiple of 1/32
    assert all((e["test/main/accuracy"] * 32) % 1 == 0 for e in log)


def _fake(size: int, rank: int = 0) -> distributed.Dist:
    return distributed.Dist(SimpleNamespace(size=size, rank=rank, intra_rank=rank), "naive")


def test_global_batch_must_divide_by_the_ranks() -> None:
    """A batch that does not split evenly over the ranks is refused with one message."""
    cpu = chainer.get_device("@numpy")
    distributed.check(_fake(2), 16, cpu)
    with pytest.raises(UsageError, match="global batch size 15 does not divide by the 2"):
        distributed.check(_fake(2), 15, cpu)
    nccl = distributed.Dist(_fake(2).comm, "pure_nccl")
    with pytest.raises(UsageError, match="needs GPUs"):
        distributed.check(nccl, 16, cpu)


def test_parts_cover_every_item_once() -> None:
    """Each rank's part of a batch or test set; together they are the whole, in order."""
    for n, size in [(16, 2), (32, 4), (10, 3)]:
        parts = [range(n)[distributed.part(n, _fake(size, r))] for r in range(size)]
        assert [i for p in parts for i in p] == list(range(n))
    assert distributed.device_spec("@cupy", _fake(4, 3)) == "@cupy:3"
    assert distributed.device_spec("@cupy:1", _fake(4, 3)) == "@cupy:1"


def test_sync_bn_needs_a_communicator(cifar, tmp_path: Path, capsys) -> None:
    """--sync-bn alone is refused (exit 2) before anything is written."""
    out = tmp_path / "run"
    assert main([*tiny_run.ARGS, "--sync-bn", "--out", str(out)]) == 2
    assert "--sync-bn needs --communicator" in capsys.readouterr().err
    assert not out.exists()
