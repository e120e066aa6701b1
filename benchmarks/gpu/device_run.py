"""The whole GPU verification and benchmark in one call of at most ~8 minutes.

Runs, in this order, each step in its own process with its own time limit, every result
written to ``--out`` as soon as it exists (so a call cut off by its limit keeps what it
finished):

1. ``env``: device line (``nvidia-smi``), Python, NumPy, CuPy, PyTorch versions.
2. ``install``: Chainer 7.8.1 from the wheel carried in ``.whl/`` (the GPU image has no
   Chainer and no package index), into a private target folder put on ``PYTHONPATH``. When
   CuPy has no cuDNN bindings (CuPy 14), ``CHAINER_CUDNN=0`` is set for every later step:
   Chainer then skips its "cuDNN is not enabled" warning, which would stop a ``-W error`` run.
3. ``check``: CuPy vs NumPy, one model per block type, float64 exact and float32 sanity
   (``check_correctness.py --representative``), a row per model as it finishes.
3b. ``cudnn``: the same comparison in float32 for a few models with
   :mod:`chainer_nets.cudnn_path` on (its own process: an unverified path cannot take the
   plain check down with it).
4. ``guard``: one training step per model under ``cupyx.allow_synchronize(False)``
   (``guard.py``).
5. ``bench``: training-step throughput, chainer_nets float32 / TF32 / mixed16 against the
   PyTorch twin fp32 / TF32 / AMP channels_last, eager only, with achieved TFLOP/s and % of the
   peak measured by a large matmul in the same run (``bench.py``); wrn28_10 and resnet110,
   then the concatenation-heavy and grouped-convolution models where both exist.
6. ``train``: ``python -m chainer_nets.train`` on a synthetic CIFAR-10 in Chainer's cache
   format, uninterrupted and killed + ``--resume``d (``train_smoke.py``).

Files in ``--out`` (at most 8): ``summary.md`` (environment, each step's status, time and
warnings), ``run.log`` (every step's output), ``check_correctness.md``, ``check_cudnn.md``
(their JSON at the end), ``guard.md``, ``bench.md``/``.json``, ``train.md``.

    python3 benchmarks/gpu/device_run.py --out $OUT                 # on the GPU machine
    python benchmarks/gpu/device_run.py --device @numpy --tiny --out dry-run   # CPU dry run

``--steps`` reruns only some steps (``env`` and ``install`` always run). With ``--device
@numpy`` the parts that need CuPy (the guard's detector, TF32) or PyTorch (the twin, the
torch peak) are skipped where those are absent, and everything else runs for real.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STEPS = ("check", "cudnn", "guard", "bench", "train")
#: Seconds each step may take on the GPU (the call's limit is 10 minutes; ~8 are planned).
GPU_LIMITS = {"check": 100, "cudnn": 50, "guard": 40, "bench": 190, "train": 100}
#: Benchmarked models in order; the last two are timed only where chainer_nets and the
#: PyTorch twins both have them.
BENCH_MODELS = ("wrn28_10", "resnet110", "densenet_bc100_k12", "resnext29_8x64d")
#: Chainer variants timed: Chainer's own kernels, then chainer_nets.cudnn_path's convolutions.
BENCH_CHAINER_VARIANTS = ("float32", "tf32", "mixed16", "float32+cudnn", "mixed16+cudnn")
#: Models checked again (float32) with the cuDNN path: plain, wide, joins, groups.
CUDNN_CHECK_MODELS = ("resnet20", "wrn16_8", "resnext29_8x64d")
WARNING_RE = re.compile(r"\b\w*Warning\b: .*")


def tiny_plan(python: str) -> dict[str, list[str]]:
    """Step command lines for the CPU dry run (tiny sizes)."""
    g = os.path.join(HERE, "")
    return {
        "check": [python, g + "check_correctness.py", "--device", "@numpy", "--plain-reference",
                  "--models", "resnet20", "--batch", "2", "--embed-json"],
        "cudnn": [python, g + "check_correctness.py", "--device", "@numpy", "--plain-reference",
                  "--models", "--cudnn-models", "resnet20", "--batch", "2",
                  "--name", "check_cudnn", "--embed-json"],
        "guard": [python, g + "guard.py", "--device", "@numpy", "--models", "resnet20",
                  "--batch", "2"],
        "bench": [python, g + "bench.py", "--quick", "--models", "resnet20", "--batch", "2",
                  "--chainer-variants", "float32", "mixed16", "float32+cudnn",
                  "--torch-variants", "fp32", "amp",
                  "--compile", "off", "--warmup", "1", "--repeats", "1", "--steps", "1",
                  "--gemm-n", "256", "--name", "bench"],
        "train": [python, g + "train_smoke.py", "--device", "@numpy", "--tiny"],
    }  # fmt: skip


def gpu_plan(python: str, bench_models: list[str]) -> dict[str, list[str]]:
    """Step command lines for the GPU call."""
    g = os.path.join(HERE, "")
    return {
        "check": [python, g + "check_correctness.py", "--device", "@cupy:0", "--representative",
                  "--batch", "2", "--budget-s", str(GPU_LIMITS["check"] - 30), "--embed-json"],
        "cudnn": [python, g + "check_correctness.py", "--device", "@cupy:0", "--models",
                  "--cudnn-models", *CUDNN_CHECK_MODELS, "--batch", "2",
                  "--budget-s", str(GPU_LIMITS["cudnn"] - 20), "--name", "check_cudnn",
                  "--embed-json"],
        "guard": [python, g + "guard.py", "--device", "@cupy:0", "--batch", "8",
                  "--budget-s", str(GPU_LIMITS["guard"] - 15)],
        "bench": [python, g + "bench.py", "--models", *bench_models, "--compile", "off",
                  "--chainer-variants", *BENCH_CHAINER_VARIANTS,
                  "--warmup", "3", "--repeats", "5", "--steps", "3",
                  "--budget-s", str(GPU_LIMITS["bench"] - 45), "--name", "bench"],
        "train": [python, g + "train_smoke.py", "--device", "@cupy:0"],
    }  # fmt: skip


def sh(cmd: list[str], env: dict | None = None, timeout: float = 60) -> tuple[int, str]:
    """Run a short command; (exit status, output)."""
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        return p.returncode, (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return -1, f"{type(e).__name__}: {e}"


def cupy_has_cudnn(python: str, env: dict) -> bool:
    """Whether the CuPy that ``python`` imports has the cuDNN modules Chainer 7 needs.

    Without them (CuPy 14) Chainer runs its own kernels and warns "cuDNN is not enabled" at
    the first GPU device unless ``CHAINER_CUDNN=0``; with the variable it stays silent."""
    return sh([python, "-c", "import cupy.cuda.cudnn, cupy.cudnn"], env=env)[0] == 0


def run_step(cmd: list[str], env: dict, limit: float, log: TextIO) -> tuple[int, float, list[str]]:
    """Run one step with a time limit, its output echoed and appended to ``log`` line by line;
    returns (exit status, -9 after a timeout; seconds; distinct warning lines)."""
    t0 = time.perf_counter()
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,  # the bench's workers die with it on a timeout
    )
    warnings: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            log.write(line)
            log.flush()
            m = WARNING_RE.search(line)
            if m and m.group(0) not in warnings:
                warnings.append(m.group(0))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rc = -9
        log.write(f"[killed after {limit:.0f} s]\n")
    reader.join(timeout=5)
    return rc, time.perf_counter() - t0, warnings


def main(argv: list[str] | None = None) -> int:
    """Run the steps; write summary.md; exit 1 if any step failed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT"), help="results folder ($OUT)")
    ap.add_argument("--device", default="@cupy:0", help="@cupy:0, or @numpy for the dry run")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (the CPU dry run)")
    ap.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    ap.add_argument(
        "--budget-s", type=float, default=None, help="start no step after this (GPU: 480)"
    )
    ap.add_argument(
        "--site",
        default=os.path.expanduser("~/chainer_site"),
        help="where the wheels are installed",
    )
    ap.add_argument("--bench-models", nargs="+", default=list(BENCH_MODELS))
    a = ap.parse_args(argv)
    if not a.out:
        ap.error("--out (or $OUT) is required")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = a.device.startswith("@cupy")
    if a.budget_s is None:
        a.budget_s = 480.0 if gpu else 3600.0
    t_start = time.monotonic()
    python = sys.executable
    env = os.environ.copy()
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("CUPY_TF32", "0")
    summary = [f"# chainer_nets on {a.device}: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", ""]

    # 1. Environment.
    if shutil.which("nvidia-smi"):
        summary.append(
            "- nvidia-smi: "
            + sh(
                [
                    "nvidia-smi",
                    "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                    "--format=csv,noheader",
                ]
            )[1]
        )
    versions = (
        "import sys, numpy; print('python', sys.version.split()[0], 'numpy', numpy.__version__)\n"
        "for m in ('cupy', 'torch'):\n"
        "    try:\n"
        "        mod = __import__(m); print(m, mod.__version__)\n"
        "    except Exception as e: print(m, 'absent:', type(e).__name__)\n"
    )
    summary.append("- versions: " + sh([python, "-c", versions])[1].replace("\n", "; "))

    # 2. Chainer (and the cuDNN frontend, if carried) from .whl/, unless Chainer is there.
    wheels = sorted(glob.glob(os.path.join(ROOT, ".whl", "*.whl")))
    if importlib.util.find_spec("chainer") is None:
        if not wheels:
            summary.append("- install: **no Chainer and no .whl/chainer-*.whl**; stopping")
            (out / "summary.md").write_text("\n".join(summary) + "\n")
            print("\n".join(summary))
            return 2
        rc, text = sh(
            [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
             "--no-cache-dir", "--upgrade", "--target", a.site, *wheels],
            timeout=120,
        )  # fmt: skip
        names = ", ".join(os.path.basename(w) for w in wheels)
        summary.append(f"- install: {names} -> {a.site} (exit {rc}) {text}")
        if rc:
            (out / "summary.md").write_text("\n".join(summary) + "\n")
            print("\n".join(summary))
            return 2
        env["PYTHONPATH"] = os.pathsep.join(p for p in (a.site, ROOT, env.get("PYTHONPATH")) if p)
    else:
        summary.append("- install: Chainer already importable, wheel not installed")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    if gpu and "CHAINER_CUDNN" not in os.environ and not cupy_has_cudnn(python, env):
        env["CHAINER_CUDNN"] = "0"
    summary.append(
        f"- CHAINER_CUDNN={env.get('CHAINER_CUDNN', '(unset)')}, "
        f"CUPY_TF32={env['CUPY_TF32']} (the TF32 bench variant sets its own)"
    )
    rc, text = sh(
        [python, "-c", "import chainer_nets, chainer; print('chainer', chainer.__version__, "
         "'cuda available', chainer.backends.cuda.available, 'cudnn', "
         "chainer.backends.cuda.cudnn_enabled)"],
        env=env,
    )  # fmt: skip
    summary.append(f"- import chainer_nets: exit {rc}: {text.splitlines()[-1] if text else ''}")
    rc, text = sh(
        [python, "-c", "import chainer_nets; from chainer_nets import cudnn_path as c; "
         "print('cuDNN frontend:', c.available(), c.import_error() or ''); "
         "m = c.frontend(); print('version', getattr(m, '__version__', '-'), "
         "'backend', m.backend_version() if m else '-')"],
        env=env,
    )  # fmt: skip
    summary.append(
        f"- cuDNN path (chainer_nets.cudnn_path): exit {rc}: {text.replace(chr(10), '; ')}"
    )
    summary += ["", "| step | exit | s | warnings |", "|---|---:|---:|---|"]

    # 3-6. The steps.
    plan = tiny_plan(python) if a.tiny else gpu_plan(python, a.bench_models)
    status = {}
    with open(out / "run.log", "a") as log:
        for step in a.steps:
            cmd = [*plan[step], "--out", str(out)]
            left = a.budget_s - (time.monotonic() - t_start)
            if left <= 0:
                status[step] = None
                summary.append(f"| {step} | not run: --budget-s {a.budget_s:g} reached | | |")
                continue
            limit = min(GPU_LIMITS[step] if gpu else 900, left + 60)
            step_env = env
            if step in ("check", "cudnn"):
                # cuDNN runs float32 convolutions in TF32 unless told not to; the check's
                # float32 comparison of the cuDNN path needs full float32.
                step_env = {**env, "NVIDIA_TF32_OVERRIDE": "0"}
            rc, sec, warns = run_step(cmd, step_env, limit, log)
            status[step] = rc
            shown = "<br>".join(w.replace("|", "/")[:200] for w in warns[:8]) or "-"
            exit_text = "timeout" if rc == -9 else str(rc)
            summary.append(f"| {step} | {exit_text} | {sec:.0f} | {shown} |")
            (out / "summary.md").write_text("\n".join(summary) + "\n")
    total = time.monotonic() - t_start
    summary += ["", f"Total {total:.0f} s."]
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n" + "\n".join(summary), flush=True)
    return 0 if all(rc == 0 for rc in status.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
