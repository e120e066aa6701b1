"""Training-step throughput on CPU: Chainer default vs chainer_nets.cpu_fast vs PyTorch.

One run, one machine: for each model it times full training steps (forward, backward,
MomentumSGD update) at a fixed batch size, excluding warm-up, and reports the median
images/s of the repeats for Chainer's own NumPy path, the fast path, and
architecture-identical PyTorch CPU models in NCHW and channels_last. Parameter counts
are asserted equal between the Chainer and PyTorch models.

    (environment: see benchmarks/cpu/requirements.txt)
    .venv-bench/bin/python benchmarks/cpu/bench.py --out benchmarks/cpu/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

import chainer_nets  # noqa: E402, I001  (installs the NumPy-2 compat layer before chainer)
import numpy as np  # noqa: E402
import torch  # noqa: E402

import chainer  # noqa: E402
import chainer.functions as F  # noqa: E402
from chainer_nets import cpu_fast  # noqa: E402
from torch_models import get_torch_model  # noqa: E402

DEFAULT_PLAN = {"resnet20": (1, 3), "resnet110": (1, 2), "wrn16_8": (1, 1)}


def _time_interleaved(
    steps: dict[str, Callable[[], None]], warmup: int, repeats: int
) -> dict[str, float]:
    """Median seconds per step of each closure, timed round-robin after ``warmup`` calls each.

    Interleaving the repeats spreads load changes on a shared machine over all paths alike.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {key: [] for key in steps}
    for _ in range(repeats):
        for key, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - t0)
    return {key: statistics.median(ts) for key, ts in times.items()}


def chainer_step(name: str, x: np.ndarray, t: np.ndarray, fast: bool) -> Callable[[], None]:
    """A closure doing one Chainer training step on ``name`` with the fast path on/off."""
    model = chainer_nets.get_model(name)
    opt = chainer.optimizers.MomentumSGD(lr=0.1, momentum=0.9)
    opt.setup(model)

    def step() -> None:
        with cpu_fast.enabled(fast):
            loss = F.softmax_cross_entropy(model(x), t)
            model.cleargrads()
            loss.backward()
            opt.update()

    return step


def torch_step(name: str, x: np.ndarray, t: np.ndarray, channels_last: bool) -> Callable[[], None]:
    """A closure doing one PyTorch training step (NCHW or channels_last)."""
    model = get_torch_model(name)
    xt, tt = torch.from_numpy(x), torch.from_numpy(t.astype(np.int64))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        xt = xt.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(xt), tt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def param_counts(name: str) -> tuple[int, int]:
    """(Chainer, PyTorch) parameter counts of ``name``."""
    cm = chainer_nets.get_model(name)
    tm = get_torch_model(name)
    return sum(p.size for p in cm.params()), sum(p.numel() for p in tm.parameters())


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    """Run the benchmark and print (and optionally write) the result table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_PLAN))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=None, help="override per-model warm-up")
    ap.add_argument("--repeats", type=int, default=None, help="override per-model repeats")
    ap.add_argument("--skip-default", nargs="*", default=[], help="models without Chainer default")
    ap.add_argument(
        "--rounds",
        nargs="*",
        default=[],
        metavar="MODEL=N",
        help="repeat a model's interleaved timing N times (medians reported, ratio range shown)",
    )
    ap.add_argument("--out", default=None, help="write a markdown table here")
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    args = ap.parse_args()
    try:
        args.rounds = {k: int(v) for k, v in (item.split("=", 1) for item in args.rounds)}
    except ValueError:
        ap.error("--rounds takes MODEL=N items, e.g. --rounds resnet20=5")

    cpu_fast.install()
    load_start = os.getloadavg()
    rng = np.random.RandomState(0)
    x = rng.rand(args.batch, 3, 32, 32).astype(np.float32)
    t = rng.randint(0, 10, args.batch).astype(np.int32)
    rows = []
    for name in args.models:
        warm, reps = DEFAULT_PLAN.get(name, (1, 3))
        warm = args.warmup if args.warmup is not None else warm
        reps = args.repeats if args.repeats is not None else reps
        pc, pt = param_counts(name)
        assert pc == pt, f"{name}: Chainer has {pc} parameters, PyTorch {pt}"
        plan = {
            "torch_cl": lambda name=name: torch_step(name, x, t, True),
            "torch_nchw": lambda name=name: torch_step(name, x, t, False),
            "fast": lambda name=name: chainer_step(name, x, t, True),
        }
        if name not in args.skip_default:
            plan["default"] = lambda name=name: chainer_step(name, x, t, False)
        steps = {key: make() for key, make in plan.items()}
        rounds = []
        for r in range(args.rounds.get(name, 1)):
            per = {k: args.batch / sec for k, sec in _time_interleaved(steps, warm, reps).items()}
            for key, ips in per.items():
                print(f"{name:10s} round {r} {key:10s} {ips:8.1f} img/s", flush=True)
            rounds.append(per)
        del steps
        res = {key: statistics.median(p[key] for p in rounds) for key in rounds[0]}
        ratios = sorted(p["fast"] / p["torch_cl"] for p in rounds)
        rows.append((name, pc, res, ratios))

    head = (
        "| model | params | Chainer default | cpu_fast | PyTorch NCHW | PyTorch channels_last "
        "| fast / channels_last | fast / default |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = ""
    for name, pc, r, ratios in rows:
        d = r.get("default")
        body += (
            f"| {name} | {pc / 1e6:.2f}M | {d:.1f} | "
            if d
            else f"| {name} | {pc / 1e6:.2f}M | - | "
        )
        body += f"{r['fast']:.1f} | {r['torch_nchw']:.1f} | {r['torch_cl']:.1f} | "
        spread = (
            f" ({ratios[0]:.2f}-{ratios[-1]:.2f}, {len(ratios)} rounds)" if len(ratios) > 1 else ""
        )
        body += f"{statistics.median(ratios):.3f}x{spread} | " + (
            f"{r['fast'] / d:.1f}x |\n" if d else "- |\n"
        )
    load_end = os.getloadavg()
    meta = (
        f"- load average (1 min) at start / end: {load_start[0]:.1f} / {load_end[0]:.1f} "
        "(shared machine; paths are timed round-robin so load hits all of them alike)\n"
        f"- date: {args.date}\n- CPU: {cpu_model()}, {os.cpu_count()} cores "
        f"(torch threads {torch.get_num_threads()})\n"
        f"- Python {platform.python_version()}, NumPy {np.__version__}, Chainer "
        f"{chainer.__version__}, PyTorch {torch.__version__}\n"
        f"- batch {args.batch}, training step = forward + backward + MomentumSGD(0.9) update, "
        "images/s = batch / median step time after warm-up (median over rounds where repeated)\n"
    )
    table = head + body
    print("\n" + meta + "\n" + table)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# CPU training throughput (images/s, higher is better)\n\n")
            f.write(meta + "\n" + table + "\n")
            f.write("Command: `" + " ".join(["python", *sys.argv]) + "`\n")


if __name__ == "__main__":
    main()
