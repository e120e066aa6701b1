"""Every registered model: one training step with chainer_nets.cpu_fast against Chainer's own
NumPy path (the "no model slower than the default path" check; no PyTorch needed).

    python benchmarks/cpu/all_models.py [--batch 16] [--models NAME ...] [--skip NAME ...]

The two paths take turns, one training step each. The first turn of each path is a warm-up;
the table gives the median of the later ones: ``--rounds`` of them (default 5) for a model whose
warm-up steps both took under ``--long`` seconds (default 5; single steps of such models vary
by 10% on a 2-core machine), one otherwise. A model whose warm-up steps both took longer than
``--single-above`` seconds (default 60) is timed by its warm-up steps alone (the warm-up is then
a small part of a step). NumPy's global random state is reseeded before every step, so
stochastic architectures (drop-path, stochastic depth, swapout, dropout) drop the same parts on
both paths.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import chainer_nets  # noqa: E402, I001  (installs the NumPy-2 compat layer before chainer)
import numpy as np  # noqa: E402

import chainer  # noqa: E402
import chainer.functions as F  # noqa: E402
from chainer_nets import cpu_fast  # noqa: E402


def train_step(model, opt, x, t, fast: bool) -> float:
    """Seconds of one training step on the fast path (``fast``) or Chainer's default path."""
    np.random.seed(1)  # stochastic layers drop the same parts on both paths
    with cpu_fast.enabled(fast):
        t0 = time.perf_counter()
        loss = F.softmax_cross_entropy(model(x), t)
        model.cleargrads()
        loss.backward()
        opt.update()
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    """Print a markdown table of step times, fast path vs Chainer's default path."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--skip", nargs="*", default=[])
    ap.add_argument(
        "--models",
        nargs="*",
        default=None,
        help="time these models, in this order (default: every CIFAR-10 model)",
    )
    ap.add_argument("--rounds", type=int, default=5, help="timed turns per path, short models")
    ap.add_argument("--long", type=float, default=5.0, metavar="SECONDS")
    ap.add_argument("--single-above", type=float, default=60.0, metavar="SECONDS")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32)
    t = rng.integers(0, 10, args.batch).astype(np.int32)
    print("| model | cpu_fast s/step | Chainer default s/step | default / fast |")
    print("|---|---:|---:|---:|")
    slower = []
    infos = {info.name: info for info in chainer_nets.list_models()}
    unknown = [name for name in args.models or [] if name not in infos]
    if unknown:
        print("unknown model(s):", ", ".join(unknown), file=sys.stderr)
        return 2
    names = args.models if args.models is not None else list(infos)
    for name in names:
        info = infos[name]
        if info.name in args.skip or info.dataset != "cifar10":  # ImageNet configs: not 32x32
            continue
        model = chainer_nets.get_model(info.name)
        opt = chainer.optimizers.MomentumSGD(lr=0.01)
        opt.setup(model)
        warm = {fast: train_step(model, opt, x, t, fast) for fast in (True, False)}
        shortest = min(warm.values())
        rounds = 0 if shortest > args.single_above else 1 if shortest > args.long else args.rounds
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(rounds):
            for fast in (True, False):
                times[fast].append(train_step(model, opt, x, t, fast))
        last = {fast: float(np.median(times[fast] or [warm[fast]])) for fast in (True, False)}
        ratio = last[False] / last[True]
        if ratio < 1:
            slower.append(info.name)
        print(f"| {info.name} | {last[True]:.2f} | {last[False]:.2f} | {ratio:.1f}x |", flush=True)
    if slower:
        print("slower than Chainer's default path:", ", ".join(slower))
    return 1 if slower else 0


if __name__ == "__main__":
    raise SystemExit(main())
