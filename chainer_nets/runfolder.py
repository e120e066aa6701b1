"""The run folder: what a training run writes, how it writes it, and who may write it.

A run folder (``--out``) holds::

    config.json          options, recipe, schedule and normalisation (written first)
    log                  Chainer's LogReport, one entry per epoch
    loss.png, accuracy.png
    snapshot_epoch_N     the trainer's state after epoch N (the two newest are kept)
    model.npz            the final weights
    result.json          the final result (written once, at the end)
    .lock                held by the run that is using the folder

Every file is written to ``<name>.tmp`` first and renamed into place, so a kill or
a full disk leaves either the old file or the new one, never half of one; stray
temporary files are removed when the next run takes the folder. This module also
turns a ``--device`` string into a Chainer device and describes the machine for
``result.json``.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import chainer
import numpy as np

from chainer_nets import __version__

try:  # POSIX advisory locks; elsewhere the folder is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

CONFIG_FILE = "config.json"
RESULT_FILE = "result.json"
MODEL_FILE = "model.npz"
LOG_FILE = "log"
LOCK_FILE = ".lock"
PLOT_FILES = ("loss.png", "accuracy.png")
SNAPSHOT_PREFIX = "snapshot_epoch_"
TMP_SUFFIX = ".tmp"
#: How many snapshots a run keeps (the newest ones).
SNAPSHOTS_KEPT = 2

_SNAPSHOT_RE = re.compile(rf"^{SNAPSHOT_PREFIX}(\d+)$")
_TMP_RE = re.compile(
    rf"^(?:(?:{re.escape(CONFIG_FILE)}|{re.escape(RESULT_FILE)}|{re.escape(MODEL_FILE)}"
    rf"|{SNAPSHOT_PREFIX}\d+){re.escape(TMP_SUFFIX)}|(?:loss|accuracy){re.escape(TMP_SUFFIX)}\.png)$"
)
# Temporary folders of Chainer's LogReport (``log`` + 8 characters, holding log.json)
# and of Chainer's own snapshot writer (older runs).
_CHAINER_TMP_DIR_RE = re.compile(rf"^(?:{LOG_FILE}|tmp{SNAPSHOT_PREFIX}\d+)\w{{8}}$")


class UsageError(ValueError):
    """A bad option value, combination or input file; the message says which and why (exit 2)."""


class RunError(RuntimeError):
    """The run failed while training or writing (exit 1); the message names the last good snapshot."""


# ---------------------------------------------------------------------------------------------
# Names


def snapshot_name(epoch: int) -> str:
    """File name of the snapshot taken after ``epoch``."""
    return f"{SNAPSHOT_PREFIX}{epoch}"


def plot_tmp_name(name: str) -> str:
    """Where a plot is drawn before it replaces ``name`` (matplotlib needs the ``.png``)."""
    stem, dot, ext = name.rpartition(".")
    return f"{stem}{TMP_SUFFIX}{dot}{ext}"


def snapshot_epoch(name: str) -> int | None:
    """The epoch of a snapshot file name, or None when the name is not exactly one."""
    m = _SNAPSHOT_RE.match(name)
    return int(m.group(1)) if m else None


def list_snapshots(out: Path) -> list[Path]:
    """The run's snapshot files, newest (highest epoch) first; other files are ignored."""
    if not out.is_dir():
        return []
    found = [(snapshot_epoch(p.name), p) for p in out.iterdir() if p.is_file()]
    return [p for e, p in sorted((e, p) for e, p in found if e is not None)[::-1]]


# ---------------------------------------------------------------------------------------------
# Writing and reading


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write(tmp)`` on a temporary file, flushed and renamed into place."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: dict) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, default=str) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text))


def save_npz(path: Path, obj: chainer.Serializable) -> None:
    """Save a link or trainer with Chainer's NPZ serializer, atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            chainer.serializers.save_npz(f, obj)

    write_atomic(path, write)


def read_config(run_dir: Path) -> dict:
    """The run's ``config.json``; UsageError when it is missing or unreadable."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise UsageError(f"{path} not found: {run_dir} is not a chainer_nets run")
    try:
        config = json.loads(path.read_text())
        for key in ("normalize_mean", "normalize_std"):
            config[key]
        config["config"]["model"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"cannot read {path} ({type(e).__name__}: {e}); it is damaged") from e
    return config


def read_json(path: Path) -> dict | None:
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def clean_stale_temps(out: Path) -> list[str]:
    """Remove the temporary files and folders earlier runs left behind; return their names."""
    removed = []
    for p in out.iterdir() if out.is_dir() else []:
        if p.is_file() and _TMP_RE.match(p.name):
            p.unlink()
            removed.append(p.name)
        elif p.is_dir() and _CHAINER_TMP_DIR_RE.match(p.name):
            inside = {q.name for q in p.iterdir()}
            if inside <= {"log.json", p.name[3:-8]}:  # only what Chainer writes there
                shutil.rmtree(p)
                removed.append(p.name)
    return removed


def is_no_space(e: OSError) -> bool:
    """Whether an OSError means the disk (or quota) is full."""
    return e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


# ---------------------------------------------------------------------------------------------
# The output folder and its lock


def check_out(out: Path) -> None:
    """UsageError when ``out`` cannot be a folder (it, or a folder above it, is a file)."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "exists and is not a directory" if p == out else f"is under a file ({p})"
                raise UsageError(f"--out {out} {what}")
            return


def holds_run(out: Path) -> bool:
    """Whether ``out`` holds anything besides the lock file and stale temporary files."""
    if not out.is_dir():
        return False
    for p in out.iterdir():
        if p.name == LOCK_FILE or (p.is_file() and _TMP_RE.match(p.name)):
            continue
        if p.is_dir() and _CHAINER_TMP_DIR_RE.match(p.name):
            continue
        return True
    return False


def lock_holder(out: Path) -> str | None:
    """Who holds the folder's lock ("pid N: command"), or None when nobody does."""
    path = out / LOCK_FILE
    if fcntl is None or not path.is_file():
        return None
    with open(path) as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return f.read().strip() or "another process"
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return None


def _busy(out: Path, holder: str) -> UsageError:
    return UsageError(f"--out {out} is in use by another run ({holder}); wait for it to end")


class RunLock:
    """An exclusive lock on a run folder, held while a run writes there."""

    def __init__(self, out: Path, command: str = "") -> None:
        self.out, self.command, self._file = out, command, None

    def acquire(self) -> RunLock:
        """Take the lock or raise UsageError naming the run that holds it."""
        f = open(self.out / LOCK_FILE, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                f.close()
                raise _busy(self.out, holder) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}: {self.command}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        """Let go of the lock (the file stays; it is empty of meaning once unlocked)."""
        if self._file is not None:
            if fcntl is not None:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_free(out: Path, resume: bool, locked: bool = False) -> None:
    """UsageError when another run holds ``out``, or when a new run would overwrite one
    (``locked``: this process holds the lock already)."""
    holder = None if locked else lock_holder(out)
    if holder is not None:
        raise _busy(out, holder)
    if not resume and holds_run(out):
        raise UsageError(
            f"--out {out} already holds a run; pass --resume to continue it or choose another --out"
        )


# ---------------------------------------------------------------------------------------------
# Devices and the machine


def resolve_device(spec: str) -> chainer.backend.Device:
    """The Chainer device for a ``--device`` string (-1, @numpy, 0, @cupy:0, ...); UsageError."""
    spec = spec.strip()
    try:
        parsed: int | str = int(spec)
    except ValueError:
        parsed = spec
    try:
        device = chainer.get_device(parsed)
    except Exception as e:
        if str(spec).startswith("@cupy") or (isinstance(parsed, int) and parsed >= 0):
            raise UsageError(
                f"device {spec!r} asked for an NVIDIA GPU, but CuPy cannot use one here "
                f"({type(e).__name__}: {e}). Install CuPy for your CUDA version, or run on the "
                "CPU with --device @numpy."
            ) from e
        raise UsageError(
            f"invalid device {spec!r}: use -1 or @numpy for the CPU, 0 or @cupy:0 for GPU 0"
        ) from e
    if device.xp is not np:
        try:
            device.use()
            device.xp.zeros(1).sum()  # touches the GPU: fails here rather than mid-run
        except Exception as e:
            raise UsageError(f"device {device} cannot be used: {type(e).__name__}: {e}") from e
    return device


def synchronize(device: chainer.backend.Device) -> None:
    """Wait until the device has finished its queued work (nothing to wait for on the CPU)."""
    if device.xp is not np:
        device.device.synchronize()


def versions() -> dict:
    """Versions of Python, NumPy, Chainer, CuPy (if installed) and this package."""
    v = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "chainer": chainer.__version__,
        "chainer_nets": __version__,
        "platform": platform.platform(),
    }
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        v["cupy"] = getattr(cupy, "__version__", "?")
    return v


def device_name(device: chainer.backend.Device) -> str:
    """The processor or GPU a device runs on, in words."""
    if device.xp is np:
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        cpu = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        return f"CPU: {cpu}, {os.cpu_count()} cores"
    props = device.xp.cuda.runtime.getDeviceProperties(device.device.id)
    return f"GPU: {props['name'].decode()}"


# ---------------------------------------------------------------------------------------------
# Resuming


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160] if text else ''}".rstrip(": ")


def load_newest_snapshot(out: Path, target: chainer.Serializable) -> Path | None:
    """Load the newest snapshot that loads into ``target`` and return its path (None when
    there is none); each one that fails is named in a one-line warning, and UsageError
    is raised when none of them loads."""
    snaps = list_snapshots(out)
    for i, path in enumerate(snaps):
        try:
            chainer.serializers.load_npz(str(path), target)
            return path
        except Exception as e:
            then = f"falling back to {snaps[i + 1].name}" if i + 1 < len(snaps) else "none left"
            print(f"warning: cannot load {path} ({_one_line(e)}); {then}", file=sys.stderr)
    if snaps:
        raise UsageError(
            f"--resume: no snapshot in {out} can be loaded "
            f"({', '.join(p.name for p in snaps)}; another model's or damaged); "
            "start a new run with another --out"
        )
    return None
