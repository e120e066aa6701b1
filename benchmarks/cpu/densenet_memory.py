"""Peak memory of one DenseNet training step, with and without the memory-efficient layers.

    python benchmarks/cpu/densenet_memory.py [--model densenet_bc190_k40] [--batch 8]
        [--modes naive efficient] [--warmup-batch N] [--fast-path off]
        [--out benchmarks/cpu/densenet_memory.json [--append]]

Each setting runs in a fresh Python process that builds the model and a Nesterov optimizer,
runs one warm-up step (so parameters, gradients, optimizer state and the fast path's scratch
buffers already exist), times a second step, then measures the memory of a third (forward,
backward, update). Two memory figures per setting:

* ``step_peak_mb``: the peak of NumPy and Python allocations during the measured step,
  above what was allocated when it started (``tracemalloc``; NumPy reports its array
  buffers to it). This is the memory the step's activations need.
* ``max_rss_mb``: the process's peak resident set size over its whole life
  (``resource.getrusage``, ``ru_maxrss``), which adds the interpreter, the parameters,
  their gradients and the optimizer state.

For large batches ``--warmup-batch 2`` makes the warm-up step small and skips the untraced
timed step (a batch-64 step of the largest model takes many minutes on two cores): the
parameters' gradients and the optimizer state then exist before the measured step, while the
fast path's scratch buffers for the full batch are allocated inside it, so the figure errs
high by at most those buffers. ``--append`` adds the rows to an existing ``--out`` file.
``--fast-path off`` measures Chainer's own NumPy path (``CHAINER_NETS_CPU_FAST=0`` in the child
processes): no fast-path buffers, so the smallest process for a given batch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def measure(
    model: str, batch: int, memory_efficient: bool, warmup_batch: int | None = None
) -> dict:
    """One warm-up and one measured training step in this process; the figures as a dict."""
    sys.path.insert(0, str(ROOT))
    import resource  # noqa: I001  (chainer_nets must come before chainer: compat layer)
    import tracemalloc

    import chainer_nets  # noqa: F401
    import numpy as np

    import chainer
    import chainer.functions as F
    from chainer_nets import cpu_fast

    net = chainer_nets.get_model(model, memory_efficient=memory_efficient)
    opt = chainer.optimizers.NesterovAG(lr=0.1, momentum=0.9)
    opt.setup(net)
    rng = np.random.default_rng(0)
    x_full = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    t_full = rng.integers(0, 10, batch).astype(np.int32)

    def step(n: int = batch) -> float:
        x, t = x_full[:n], t_full[:n]
        t0 = time.perf_counter()
        with chainer.using_config("train", True):
            loss = F.softmax_cross_entropy(net(x), t)
        net.cleargrads()
        loss.backward()
        loss.unchain_backward()
        opt.update()
        return time.perf_counter() - t0

    small = warmup_batch is not None and warmup_batch != batch
    step(warmup_batch if small else batch)  # warm-up: gradients and optimizer state now exist
    untraced = None if small else step()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    seconds = step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "model": model,
        "batch": batch,
        "memory_efficient": memory_efficient,
        "cpu_fast": cpu_fast.is_enabled(),
        "step_peak_mb": round((peak - base) / 2**20, 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "warmup_batch": warmup_batch if small else batch,
        "step_seconds": None if untraced is None else round(untraced, 2),
        "step_seconds_traced": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure both settings in fresh processes, print them and write them as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="densenet_bc190_k40")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument(
        "--modes", nargs="+", choices=["naive", "efficient"], default=["naive", "efficient"]
    )
    ap.add_argument("--warmup-batch", type=int, default=None, metavar="N")
    ap.add_argument("--fast-path", choices=["on", "off"], default="on")
    ap.add_argument("--out", type=Path, default=None, help="write the results here (JSON)")
    ap.add_argument("--append", action="store_true", help="add the rows to an existing --out")
    ap.add_argument("--child", choices=["naive", "efficient"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.batch < 1:
        ap.error("--batch must be at least 1")
    if args.warmup_batch is not None and not 1 <= args.warmup_batch <= args.batch:
        ap.error("--warmup-batch must be between 1 and --batch")
    if args.append and not (args.out and args.out.is_file()):
        ap.error("--append needs an existing --out file")
    if args.child:
        row = measure(args.model, args.batch, args.child == "efficient", args.warmup_batch)
        print(json.dumps(row))
        return 0
    command = f"python benchmarks/cpu/densenet_memory.py --model {args.model} --batch {args.batch}"
    if args.modes != ["naive", "efficient"]:
        command += " --modes " + " ".join(args.modes)
    if args.warmup_batch is not None:
        command += f" --warmup-batch {args.warmup_batch}"
    env = dict(os.environ)
    if args.fast_path == "off":
        command += " --fast-path off"
        env["CHAINER_NETS_CPU_FAST"] = "0"
    rows = []
    for mode in args.modes:
        cmd = [sys.executable, __file__, "--model", args.model, "--batch", str(args.batch)]
        if args.warmup_batch is not None:
            cmd += ["--warmup-batch", str(args.warmup_batch)]
        done = subprocess.run(cmd + ["--child", mode], capture_output=True, text=True, env=env)
        if done.returncode:
            sys.stderr.write(done.stderr)
            print(f"error: the {mode} measurement failed (exit {done.returncode})", file=sys.stderr)
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]) | {"command": command})
        print(json.dumps(rows[-1]), flush=True)
    result = {"cpu_count": os.cpu_count(), "rows": rows}
    if args.append:
        result = json.loads(args.out.read_text())
        result["rows"] += rows
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
