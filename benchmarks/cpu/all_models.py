"""Every registered model: one training step with chainer_nets.cpu_fast against Chainer's own
NumPy path (the "no model slower than the default path" check; no PyTorch needed).

    python benchmarks/cpu/all_models.py [--batch 16] [--models NAME ...] [--skip NAME ...]

Each path is run twice alternately; the second timing of each is reported. A model whose first
step takes longer than ``--single-above`` seconds on both paths is timed once per path (a
warm-up is then a small part of the step). NumPy's global
random state is reseeded before every step, so stochastic architectures (drop-path, stochastic
depth, swapout, dropout) drop the same parts on both paths.
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
        last = {}
        for i, fast in enumerate((True, False, True, False)):
            if i == 2 and min(last.values()) > args.single_above:
                break
            np.random.seed(1)
            with cpu_fast.enabled(fast):
                t0 = time.perf_counter()
                loss = F.softmax_cross_entropy(model(x), t)
                model.cleargrads()
                loss.backward()
                opt.update()
                last[fast] = time.perf_counter() - t0
        ratio = last[False] / last[True]
        if ratio < 1:
            slower.append(info.name)
        print(f"| {info.name} | {last[True]:.2f} | {last[False]:.2f} | {ratio:.1f}x |", flush=True)
    if slower:
        print("slower than Chainer's default path:", ", ".join(slower))
    return 1 if slower else 0


if __name__ == "__main__":
    raise SystemExit(main())
