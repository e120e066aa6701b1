"""Train the PyTorch twin of ResNet-20 with exactly the data stream of a chainer_nets run.

The CPU budget run (``python -m chainer_nets.train --model resnet20 --epochs 15 --seed S``)
is the first evidence that the whole Chainer pipeline reaches a ResNet's accuracy. To tell
"the pipeline works" from "this seed was lucky", this script trains the architecture-identical
PyTorch network (``torch_models.ResNetCifar``) on the same stream:

* the same arrays and normalisation (:func:`chainer_nets.run_data.load_data`),
* the same per-epoch order (Chainer's ``SerialIterator`` with
  :class:`chainer_nets.data.SeededOrderSampler` seeded by ``--seed``), batch 128, the last
  batch of an epoch filled from the next epoch's order as Chainer does,
* the same crops and flips (:class:`chainer_nets.data.AugmentConverter` seeded by ``--seed``),
* the same schedule (:class:`chainer_nets.schedule.Schedule` from the ``resnet`` recipe,
  compressed to ``--epochs``),
* the same update rule: Chainer's ``MomentumSGD`` (``v <- mu v - lr g; w <- w + v``; after a
  learning-rate step the velocity keeps its old scale, unlike ``torch.optim.SGD``) with
  weight decay ``1e-4`` added to the gradient of every parameter, BN scales and shifts too,
* the same initialisation *scheme*, drawn by PyTorch from ``--seed``: He-normal over the
  output fan for convolutions, BN scale 1 and shift 0, classifier weights N(0, 1/fan_in)
  and bias 0 (Chainer's ``Linear`` default).

It never imports ``chainer_nets.train``; the only framework difference left is the network
and its gradients. Accuracy is the last iteration's, on all 10,000 test images.

Run it in the benchmark environment (``requirements.txt``), from the repository root::

    python benchmarks/cpu/budget_twin.py --epochs 15 --seed 1 \
        --out benchmarks/cpu/budget_twin/resnet20_budget15_seed1.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# chainer_nets first: its NumPy-2 compat layer is what lets Chainer import
import chainer_nets  # noqa: E402,F401

# isort: split
import chainer  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch_models import ResNetCifar  # noqa: E402

from chainer_nets import data as cdata  # noqa: E402
from chainer_nets.recipes import get_recipe  # noqa: E402
from chainer_nets.run_data import load_data  # noqa: E402
from chainer_nets.schedule import Schedule  # noqa: E402


def init_like_chainer_nets(net: nn.Module) -> None:
    """The scheme of chainer_nets' resnet: He-normal fan-out convs, BN (1, 0), LeCun-normal fc."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, math.sqrt(1.0 / m.in_features))
            nn.init.zeros_(m.bias)


class ChainerMomentumSGD:
    """Chainer's MomentumSGD with its WeightDecay hook on every parameter."""

    def __init__(self, params: list[torch.Tensor], momentum: float, weight_decay: float) -> None:
        self.params, self.momentum, self.weight_decay = params, momentum, weight_decay
        self.velocity = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, lr: float) -> None:
        """``g += wd w; v = mu v - lr g; w += v`` for every parameter."""
        for p, v in zip(self.params, self.velocity, strict=True):
            g = p.grad.add(p, alpha=self.weight_decay)
            v.mul_(self.momentum).sub_(g, alpha=lr)
            p.add_(v)


def evaluate(net: nn.Module, x: np.ndarray, y: np.ndarray, conv, batch: int = 256) -> tuple:
    """(mean loss, accuracy) over all images, in test mode (BN's running statistics)."""
    net.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb, tb = conv(list(zip(x[i : i + batch], y[i : i + batch], strict=True)))
            out = net(torch.from_numpy(np.ascontiguousarray(xb)))
            t = torch.from_numpy(tb.astype(np.int64))
            loss_sum += float(F.cross_entropy(out, t, reduction="sum"))
            correct += int((out.argmax(1) == t).sum())
    net.train()
    return loss_sum / len(x), correct / len(x)


def main(argv: list[str] | None = None) -> int:
    """Train the twin and write its per-epoch log and last-iteration result as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=float, default=15)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--recipe", default="resnet")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--train-subset", type=int, default=None, help="for a quick check only")
    ap.add_argument("--test-subset", type=int, default=None, help="for a quick check only")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    recipe = get_recipe(a.recipe)
    batch = recipe.batch_size
    cfg = SimpleNamespace(
        data_dir=a.data_dir,
        val_split=None,
        train_subset=a.train_subset,
        test_subset=a.test_subset,
        batch_size=None,
    )
    d = load_data(cfg, batch)
    schedule = Schedule.from_recipe(recipe, len(d.train[0]) / batch, a.epochs)
    aug = recipe.augment
    train_conv = cdata.AugmentConverter(
        d.mean, d.std, augment=True, pad=aug.pad, pad_mode=aug.pad_mode, flip=aug.flip,
        seed=a.seed,
    )  # fmt: skip
    eval_conv = cdata.AugmentConverter(d.mean, d.std, augment=False)
    it = chainer.iterators.SerialIterator(
        chainer.datasets.TupleDataset(*d.train),
        batch,
        order_sampler=cdata.SeededOrderSampler(a.seed),
    )

    net = ResNetCifar((a.depth - 2) // 6)
    init_like_chainer_nets(net)
    net.train()
    opt = ChainerMomentumSGD(list(net.parameters()), recipe.momentum, recipe.weight_decay)

    log, sums, t_train = [], [0.0, 0.0, 0], 0.0
    t_start = time.perf_counter()
    for iteration in range(schedule.stop):
        t0 = time.perf_counter()
        xb, tb = train_conv(it.next())
        x = torch.from_numpy(np.ascontiguousarray(xb))
        t = torch.from_numpy(tb.astype(np.int64))
        for p in net.parameters():
            p.grad = None
        out = net(x)
        loss = F.cross_entropy(out, t)
        loss.backward()
        lr = schedule.lr(iteration)
        opt.step(lr)
        t_train += time.perf_counter() - t0
        sums[0] += loss.item()
        sums[1] += (out.argmax(1) == t).float().mean().item()
        sums[2] += 1
        if it.is_new_epoch or iteration == schedule.stop - 1:
            test_loss, test_acc = evaluate(net, *d.test, eval_conv)
            row = {
                "epoch": it.epoch,
                "iteration": iteration + 1,
                "main/loss": sums[0] / sums[2],
                "main/accuracy": sums[1] / sums[2],
                "test/main/loss": test_loss,
                "test/main/accuracy": test_acc,
                "lr": lr,
                "elapsed_time": time.perf_counter() - t_start,
            }
            log.append(row)
            print(json.dumps(row), flush=True)
            sums = [0.0, 0.0, 0]

    result = {
        "model": f"resnet{a.depth} (PyTorch twin)",
        "recipe": a.recipe,
        "epochs": a.epochs,
        "seed": a.seed,
        "iterations": schedule.stop,
        "milestones": list(schedule.milestones),
        "test_accuracy": log[-1]["test/main/accuracy"],
        "test_images": len(d.test[0]),
        "train_images": len(d.train[0]),
        "wall_seconds": time.perf_counter() - t_start,
        "train_images_per_second": schedule.stop * batch / t_train,
        "threads": a.threads,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "chainer": chainer.__version__,
        },
        "command": "python benchmarks/cpu/budget_twin.py " + " ".join(argv or sys.argv[1:]),
        "log": log,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(a.out)
    print(f"test accuracy (last iteration): {result['test_accuracy']:.2%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
