"""Data-parallel scaling of ``python -m chainer_nets.train --communicator``: 1 vs N processes.

    python benchmarks/mpi/scaling.py                      # CPU: 1 and 2 processes, naive
    python benchmarks/mpi/scaling.py --device @cupy --communicator pure_nccl \\
        --ranks 1 2 4 8 --model wrn28_10 --train-subset 25600 --epochs 2

Each point is one short training run under ``mpiexec -n N`` with the recipe's global batch;
the images/s is what the run writes to ``result.json`` (the updates' time, device
synchronised at epoch ends), so start-up and evaluation are left out. Efficiency is
``images/s(N) / (N * images/s(1))``. On the CPU every process gets one compute thread
(``CHAINER_NETS_CPU_THREADS=1``), so N processes use N cores. Writes a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def mpiexec() -> str:
    """The launcher beside this Python (the mpich wheel) or on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.is_file() else shutil.which("mpiexec")
    if found is None:
        sys.exit("error: mpiexec not found; pip install -e '.[mpi]'")
    return found


def run_point(a: argparse.Namespace, n: int, workdir: Path) -> dict:
    """Train once on ``n`` processes; return its images/s and wall time."""
    out = workdir / f"n{n}"
    cmd = [
        mpiexec(), "-n", str(n), sys.executable, "-m", "chainer_nets.train",
        "--model", a.model, "--device", a.device, "--communicator", a.communicator,
        "--train-subset", str(a.train_subset), "--test-subset", str(a.test_subset),
        "--epochs", str(a.epochs), "--no-progress", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "CHAINER_NETS_CPU_THREADS": str(a.threads)}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"error: {n} processes failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    res = json.loads((out / "result.json").read_text())
    return {
        "processes": n,
        "images_per_second": res["train_images_per_second"],
        "iterations": res["iterations"],
        "command_wall_seconds": round(wall, 1),
    }


def main() -> None:
    """Measure every point, print a table and write the JSON file."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--device", default="@numpy")
    p.add_argument("--communicator", default="naive")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--train-subset", type=int, default=2048)
    p.add_argument("--test-subset", type=int, default=128)
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--threads", type=int, default=1, help="CPU compute threads per process")
    p.add_argument("--out", default="benchmarks/mpi/scaling_cpu.json")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        points = [run_point(a, n, Path(tmp)) for n in a.ranks]
    base = points[0]["images_per_second"] / points[0]["processes"]
    for pt in points:
        pt["efficiency"] = round(pt["images_per_second"] / (pt["processes"] * base), 3)
        print(
            f"{pt['processes']} process(es): {pt['images_per_second']:8.1f} images/s, "
            f"efficiency {pt['efficiency']:.2f} ({pt['iterations']} iterations)"
        )
    record = {
        "settings": {k: v for k, v in vars(a).items() if k != "out"},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_end": os.getloadavg(),  # other jobs on the machine
        },
        "points": points,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
