"""Train a registered model on CIFAR-10 with its paper's recipe.

    python -m chainer_nets.train --model wrn28_10 --device @cupy:0
    python -m chainer_nets.train --list
    python -m chainer_nets.train --model resnet20 --quick          # a short CPU run

Built on Chainer's Trainer: the learning rate follows the recipe's schedule
(a pure function of the iteration, so it survives a resume), an Evaluator
scores the test set (and the validation split, if asked) every epoch,
LogReport / PrintReport / ProgressBar / PlotReport record and show progress,
FailOnNonNumber stops a diverged run, and snapshots hold everything a resume
needs: weights, optimizer state, iterator position and order, and the random
generators. At the end ``result.json`` records the last-iteration test
accuracy, wall time, images/s, device, versions, the command and the recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import chainer
import chainer.links as L
import numpy as np
from chainer import training
from chainer.training import extensions

from chainer_nets import __version__
from chainer_nets import data as cdata
from chainer_nets.recipes import Recipe, UnknownRecipeError, get_recipe
from chainer_nets.registry import (
    UnknownModelError,
    count_params,
    get_model_info,
    list_models,
)

RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.npz"
SNAPSHOT_FMT = "snapshot_epoch_{.updater.epoch}"

#: What ``--quick`` means: a run that finishes in about a minute on a laptop CPU.
QUICK = {"train_subset": 2000, "test_subset": 1000, "epochs": 2}


class UsageError(ValueError):
    """A bad option value or combination; the message says which and why."""


@dataclass
class TrainConfig:
    """Everything one training run depends on (the recipe fills what is left as None)."""

    model: str
    device: str = "@numpy"
    epochs: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    out: str | None = None
    data_dir: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    val_split: int | None = None
    dtype: str = "float32"
    loss_scale: float | None = None
    resume: bool = False
    snapshot_every: int = 1
    progress: bool = True
    print_report: bool = True
    command: str = ""  # how the run was started (filled in by the CLI)


# ---------------------------------------------------------------------------------------------
# Learning-rate schedule and run state


def lr_at(
    recipe: Recipe,
    iteration: int,
    milestones: tuple[int, ...],
    base_lr: float,
    warmup_iterations: int | None = None,
) -> float:
    """Learning rate for update number ``iteration`` (0-based): warm-up, then step decay.

    ``warmup_iterations`` overrides the recipe's (when the schedule is compressed).
    """
    warmup = recipe.warmup_iterations if warmup_iterations is None else warmup_iterations
    if recipe.warmup_lr is not None and iteration < warmup:
        return recipe.warmup_lr
    return base_lr * recipe.gamma ** sum(iteration >= m for m in milestones)


class LearningRateSchedule(training.Extension):
    """Sets the optimizer's lr before every update from the iteration count alone."""

    trigger = (1, "iteration")
    priority = training.PRIORITY_WRITER

    def __init__(
        self, recipe: Recipe, milestones: tuple[int, ...], base_lr: float, warmup: int
    ) -> None:
        self.recipe, self.milestones, self.base_lr, self.warmup = (
            recipe,
            milestones,
            base_lr,
            warmup,
        )

    def _apply(self, trainer: training.Trainer) -> None:
        opt = trainer.updater.get_optimizer("main")
        it = trainer.updater.iteration
        opt.lr = lr_at(self.recipe, it, self.milestones, self.base_lr, self.warmup)

    def initialize(self, trainer: training.Trainer) -> None:
        """Set the lr of the first update (also after a resume)."""
        self._apply(trainer)

    def __call__(self, trainer: training.Trainer) -> None:
        """Set the lr of the next update."""
        self._apply(trainer)


class RandomStateKeeper(training.Extension):
    """Saves and restores NumPy's global generator and the augmentation generator in snapshots."""

    trigger = (1, "epoch")

    def __init__(self, converter: cdata.AugmentConverter) -> None:
        self.converter = converter

    def __call__(self, trainer: training.Trainer) -> None:
        """Nothing to do per epoch; the work is in :meth:`serialize`."""

    def serialize(self, serializer: chainer.AbstractSerializer) -> None:
        """Write or read both generators' states."""
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        keys = serializer("numpy_keys", keys.copy())
        meta = serializer("numpy_meta", np.array([pos, has_gauss, gauss], dtype=np.float64))
        aug = serializer("augment", self.converter.rng_state())
        if isinstance(serializer, chainer.serializer.Deserializer):
            np.random.set_state((name, keys, int(meta[0]), int(meta[1]), float(meta[2])))
            self.converter.set_rng_state(str(aug))


class ImageWeightedEvaluator(training.Extension):
    """Per-epoch loss and accuracy averaged over images (Chainer's Evaluator averages batches,
    which skews the mean when the last batch is smaller); reports ``<name>/main/*``."""

    trigger = (1, "epoch")
    priority = training.PRIORITY_WRITER

    def __init__(self, net: chainer.Chain, x, y, conv, device, batch: int) -> None:
        self.net, self.x, self.y = net, x, y
        self.conv, self.device, self.batch = conv, device, batch

    def __call__(self, trainer: training.Trainer) -> None:
        """Evaluate and report under this extension's name."""
        res = evaluate_arrays(self.net, self.x, self.y, self.conv, self.device, self.batch)
        chainer.report(
            {f"{self.name}/main/loss": res["loss"], f"{self.name}/main/accuracy": res["accuracy"]}
        )


class TimedUpdater(training.updaters.StandardUpdater):
    """StandardUpdater that adds up the time spent in updates (for images/s)."""

    update_seconds = 0.0
    timed_updates = 0

    def update_core(self) -> None:
        """One optimizer step, timed."""
        t0 = time.perf_counter()
        super().update_core()
        self.update_seconds += time.perf_counter() - t0
        self.timed_updates += 1


# ---------------------------------------------------------------------------------------------
# Validation of the configuration (before anything is written)


def _device(spec: str) -> chainer.backend.Device:
    spec = spec.strip()
    try:
        parsed: int | str = int(spec)
    except ValueError:
        parsed = spec
    try:
        return chainer.get_device(parsed)
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


def _check_gpu(device: chainer.backend.Device) -> None:
    if device.xp is np:
        return
    try:
        device.use()
        device.xp.zeros(1).sum()  # touches the GPU: fails here rather than mid-run
    except Exception as e:
        raise UsageError(f"device {device} cannot be used: {type(e).__name__}: {e}") from e


def validate(cfg: TrainConfig) -> tuple:
    """Check every option; return (model info, recipe, device). Raises UsageError."""
    try:
        info = get_model_info(cfg.model)
        recipe = get_recipe(info.recipe)
    except (UnknownModelError, UnknownRecipeError) as e:
        raise UsageError(str(e)) from e
    checks = [
        (cfg.epochs is None or cfg.epochs > 0, f"--epochs must be > 0, got {cfg.epochs}"),
        (
            cfg.batch_size is None or cfg.batch_size > 0,
            f"--batch-size must be > 0, got {cfg.batch_size}",
        ),
        (cfg.lr is None or cfg.lr > 0, f"--lr must be > 0, got {cfg.lr}"),
        (cfg.train_subset is None or cfg.train_subset > 0, "--train-subset must be > 0"),
        (cfg.test_subset is None or cfg.test_subset > 0, "--test-subset must be > 0"),
        (cfg.val_split is None or 0 < cfg.val_split < 50000, "--val-split must be in 1..49999"),
        (cfg.snapshot_every > 0, "--snapshot-every must be > 0"),
        (
            cfg.dtype in ("float32", "mixed16"),
            f"--dtype must be float32 or mixed16, got {cfg.dtype}",
        ),
        (cfg.loss_scale is None or cfg.loss_scale > 0, "--loss-scale must be > 0"),
        (cfg.seed >= 0, f"--seed must be >= 0, got {cfg.seed}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    device = _device(cfg.device)
    _check_gpu(device)
    out = Path(cfg.out or default_out(cfg.model))
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    if cfg.resume:
        saved = out / CONFIG_FILE
        if not saved.is_file():
            raise UsageError(f"--resume: {saved} not found; nothing to resume in {out}")
        try:
            prev = json.loads(saved.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"--resume: cannot read {saved}: {e}") from e
        keys = ("model", "epochs", "batch_size", "lr", "seed", "train_subset", "val_split", "dtype")
        diff = [k for k in keys if prev["config"].get(k) != getattr(cfg, k)]
        if diff:
            raise UsageError(
                f"--resume: options {', '.join(diff)} differ from the run in {out}; "
                "resume with the same options"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise UsageError(
            f"--out {out} already holds a run; pass --resume to continue it or choose another --out"
        )
    return info, recipe, device


def default_out(model: str) -> str:
    """Default output directory of a run of ``model``."""
    return os.path.join("runs", model)


# ---------------------------------------------------------------------------------------------
# The run


def _versions() -> dict:
    v = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "chainer": chainer.__version__,
        "chainer_nets": __version__,
        "platform": platform.platform(),
    }
    try:
        import cupy

        v["cupy"] = cupy.__version__
    except Exception:
        pass
    return v


def _device_name(device: chainer.backend.Device) -> str:
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
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(device.device.id)
    return f"GPU: {props['name'].decode()}"


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def evaluate_arrays(
    net: chainer.Chain, x: np.ndarray, y: np.ndarray, conv, device, batch: int = 256
) -> dict:
    """Mean softmax cross-entropy and accuracy of ``net`` on uint8 images ``x``, labels ``y``."""
    import chainer.functions as F

    loss_sum, correct = 0.0, 0
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        for i in range(0, len(x), batch):
            xb, tb = conv(list(zip(x[i : i + batch], y[i : i + batch], strict=True)), device)
            logits = net(xb)
            loss_sum += float(F.softmax_cross_entropy(logits, tb, reduce="no").array.sum())
            correct += int((logits.array.argmax(axis=1) == tb).sum())
    return {"loss": loss_sum / len(x), "accuracy": correct / len(x)}


def train(cfg: TrainConfig, stop_at_epoch: int | None = None) -> dict:
    """Run (or resume) training; return the result dict, also written to ``result.json``.

    ``stop_at_epoch`` ends this invocation early, as an interruption would (the
    schedule and length stay those of the full run; no result file is written).
    """
    info, recipe, device = validate(cfg)
    dataset = cdata.load_cifar10(cfg.data_dir)  # raises DataError before anything is written
    out = Path(cfg.out or default_out(cfg.model))

    if cfg.val_split:
        (tx, ty), (vx, vy) = cdata.split_validation(dataset, cfg.val_split)
    else:
        (tx, ty), (vx, vy) = (dataset.train_x, dataset.train_y), (None, None)
    mean, std = cdata.channel_stats(tx)
    tx, ty = cdata.take_subset(tx, ty, cfg.train_subset)
    ex, ey = cdata.take_subset(dataset.test_x, dataset.test_y, cfg.test_subset)

    batch = cfg.batch_size or recipe.batch_size
    iters_per_epoch = len(tx) / batch
    stop, milestones = recipe.in_iterations(iters_per_epoch)
    warmup = recipe.warmup_iterations
    if cfg.epochs is not None:  # compress or stretch the whole schedule (warm-up included)
        new_stop = max(1, math.ceil(cfg.epochs * iters_per_epoch - 1e-9))  # ends on the epoch
        milestones = tuple(int(round(m * new_stop / stop)) for m in milestones)
        warmup = int(round(warmup * new_stop / stop))
        stop = new_stop
    base_lr = cfg.lr if cfg.lr is not None else recipe.lr

    out.mkdir(parents=True, exist_ok=True)
    if not cfg.resume:
        _write_json(
            out / CONFIG_FILE,
            {
                "config": dataclasses.asdict(cfg),
                "recipe": dataclasses.asdict(recipe),
                "model_info": {k: v for k, v in dataclasses.asdict(info).items() if k != "factory"},
                "stop_iteration": stop,
                "milestones_iteration": milestones,
                "warmup_iterations": warmup,
                "base_lr": base_lr,
                "batch_size": batch,
                "train_images": len(tx),
                "test_images": len(ex),
                "val_images": 0 if vx is None else len(vx),
                "normalize_mean": mean.tolist(),
                "normalize_std": std.tolist(),
            },
        )

    np.random.seed(cfg.seed)
    if device.xp is not np:
        device.xp.random.seed(cfg.seed)
    dtype = chainer.mixed16 if cfg.dtype == "mixed16" else np.float32
    with chainer.using_config("dtype", dtype):
        net = info.build()
        model = L.Classifier(net)
        model.to_device(device)
        if recipe.optimizer == "nesterov":
            optimizer = chainer.optimizers.NesterovAG(lr=base_lr, momentum=recipe.momentum)
        else:
            optimizer = chainer.optimizers.MomentumSGD(lr=base_lr, momentum=recipe.momentum)
        optimizer.setup(model)
        optimizer.add_hook(chainer.optimizer_hooks.WeightDecay(recipe.weight_decay))
        if cfg.dtype == "mixed16":
            optimizer.use_fp32_update()
        if hasattr(net, "configure_optimizer"):
            net.configure_optimizer(optimizer, recipe)

        in_dtype = np.float16 if cfg.dtype == "mixed16" else np.float32
        aug = recipe.augment
        train_conv = cdata.AugmentConverter(
            mean,
            std,
            augment=True,
            pad=aug.pad,
            pad_mode=aug.pad_mode,
            flip=aug.flip,
            seed=cfg.seed,
            dtype=in_dtype,
        )
        eval_conv = cdata.AugmentConverter(mean, std, augment=False, dtype=in_dtype)
        train_iter = chainer.iterators.SerialIterator(
            chainer.datasets.TupleDataset(tx, ty),
            batch,
            order_sampler=cdata.SeededOrderSampler(cfg.seed),
        )
        loss_scale = cfg.loss_scale or (1024.0 if cfg.dtype == "mixed16" else None)
        updater = TimedUpdater(
            train_iter, optimizer, converter=train_conv, device=device, loss_scale=loss_scale
        )
        trainer = training.Trainer(updater, (stop, "iteration"), out=str(out))

        eval_batch = max(batch, 256)

        def evaluator(x, y):
            return ImageWeightedEvaluator(net, x, y, eval_conv, device, eval_batch)

        trainer.extend(LearningRateSchedule(recipe, milestones, base_lr, warmup))
        trainer.extend(RandomStateKeeper(train_conv), name="rng")
        if vx is not None:
            trainer.extend(evaluator(vx, vy), name="val")
        trainer.extend(evaluator(ex, ey), name="test")
        trainer.extend(extensions.FailOnNonNumber())
        trainer.extend(extensions.observe_lr())
        trainer.extend(extensions.LogReport(trigger=(1, "epoch")))
        keys = ["main/loss", "main/accuracy"]
        keys += ["val/main/accuracy"] if vx is not None else []
        keys += ["test/main/loss", "test/main/accuracy"]
        if cfg.print_report:
            trainer.extend(
                extensions.PrintReport(["epoch", "iteration", *keys, "lr", "elapsed_time"])
            )
        if cfg.progress:
            trainer.extend(extensions.ProgressBar(update_interval=10))
        plots = {
            "loss.png": ["main/loss", "val/main/loss", "test/main/loss"],
            "accuracy.png": ["main/accuracy", "val/main/accuracy", "test/main/accuracy"],
        }
        for name, ys in plots.items():
            ys = [y for y in ys if vx is not None or not y.startswith("val/")]
            trainer.extend(extensions.PlotReport(ys, "epoch", file_name=name))
        trainer.extend(
            extensions.snapshot(filename=SNAPSHOT_FMT, autoload=cfg.resume, n_retains=1),
            trigger=(cfg.snapshot_every, "epoch"),
        )
        if stop_at_epoch is not None:
            trainer.stop_trigger = _EarlyStop(stop, stop_at_epoch)

        t0 = time.time()
        trainer.run()
        wall = time.time() - t0
        if stop_at_epoch is not None and updater.iteration < stop:
            return {"interrupted_at_iteration": updater.iteration}

        chainer.serializers.save_npz(str(out / MODEL_FILE), net)
        test = evaluate_arrays(net, ex, ey, eval_conv, device, eval_batch)
        val = (
            evaluate_arrays(net, vx, vy, eval_conv, device, eval_batch) if vx is not None else None
        )

    result = {
        "model": cfg.model,
        "paper": info.paper,
        "arxiv": info.arxiv,
        "paper_accuracy": info.paper_accuracy,
        "test_accuracy": round(100 * test["accuracy"], 2),
        "test_loss": test["loss"],
        "val_accuracy": None if val is None else round(100 * val["accuracy"], 2),
        "accuracy_protocol": "model after the last iteration, single central view; no epoch selection",
        "iterations": updater.iteration,
        "epochs": round(updater.epoch_detail, 3),
        "train_images": len(tx),
        "test_images": len(ex),
        "parameters": count_params(net),
        "wall_seconds": round(wall, 1),
        "train_images_per_second": round(
            updater.timed_updates * batch / max(updater.update_seconds, 1e-9), 1
        ),
        "device": _device_name(device),
        "dtype": cfg.dtype,
        "versions": _versions(),
        "command": cfg.command,
        "recipe": recipe.name,
        "recipe_summary": recipe.summary(),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    _write_json(out / RESULT_FILE, result)
    return result


class _EarlyStop:
    """Stop trigger for ``stop_at_epoch``: the full run's length, or an earlier epoch."""

    def __init__(self, stop: int, epoch: int) -> None:
        self.stop, self.epoch = stop, epoch

    def __call__(self, trainer: training.Trainer) -> bool:
        u = trainer.updater
        return u.iteration >= self.stop or (u.is_new_epoch and u.epoch >= self.epoch)

    def get_training_length(self) -> tuple[int, str]:
        return self.stop, "iteration"


# ---------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m chainer_nets.train",
        description="Train a chainer_nets model on CIFAR-10 with its paper's recipe.",
    )
    p.add_argument("--model", help="registered model name (see --list)")
    p.add_argument("--list", action="store_true", help="list every model and its recipe")
    p.add_argument("--device", default="@numpy", help="-1/@numpy (CPU), 0/@cupy:0 (GPU 0)")
    p.add_argument("--epochs", type=float, help="train this long (the lr schedule scales along)")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    p.add_argument("--lr", type=float, help="override the recipe's initial learning rate")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", help="output directory (default runs/MODEL)")
    p.add_argument("--data-dir", help="folder with cifar-10.npz or cifar-10-batches-py")
    p.add_argument(
        "--train-subset", type=int, help="train on the first N images of a fixed shuffle"
    )
    p.add_argument("--test-subset", type=int, help="evaluate on N test images")
    p.add_argument("--val-split", type=int, help="hold out N training images for validation")
    p.add_argument(
        "--quick",
        action="store_true",
        help="short CPU run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()),
    )
    p.add_argument("--dtype", default="float32", choices=["float32", "mixed16"])
    p.add_argument("--loss-scale", type=float, help="static loss scale (mixed16; default 1024)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--snapshot-every", type=int, default=1, help="epochs between snapshots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def format_model_list() -> str:
    """The table printed by ``--list``."""
    rows = [("name", "paper", "params", "paper", "paper acc", "recipe")]
    for i in list_models():
        n = count_params(i.build(), i.params_counting)
        rows.append(
            (
                i.name,
                f"{i.paper_no:02d} {i.paper}",
                f"{n / 1e6:.{max(i.params_decimals, 2)}f}M",
                (f"{i.paper_params}M" + ("*" if i.params_mismatch else ""))
                if i.paper_params
                else "-",
                f"{i.paper_accuracy:.2f}" if i.paper_accuracy else "-",
                f"{i.recipe}: {get_recipe(i.recipe).summary()}",
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    ]
    lines += [f"* {i.name}: {i.params_mismatch}" for i in list_models() if i.params_mismatch]
    return "\n".join(lines)


def config_from_args(argv: list[str] | None = None) -> TrainConfig | None:
    """Parse the command line into a TrainConfig (None for --list)."""
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.list:
        return None
    if not a.model:
        raise UsageError("--model is required (or --list to see the models)")
    cfg = TrainConfig(
        model=a.model,
        device=a.device,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        out=a.out,
        data_dir=a.data_dir,
        train_subset=a.train_subset,
        test_subset=a.test_subset,
        val_split=a.val_split,
        dtype=a.dtype,
        loss_scale=a.loss_scale,
        resume=a.resume,
        snapshot_every=a.snapshot_every,
        progress=not a.no_progress,
        command=shlex.join(
            ["python", "-m", "chainer_nets.train", *(sys.argv[1:] if argv is None else argv)]
        ),
    )
    if a.quick:
        for k, v in QUICK.items():
            if getattr(cfg, k) is None:
                setattr(cfg, k, v)
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m chainer_nets.train``; returns the exit status."""
    try:
        cfg = config_from_args(argv)
        if cfg is None:
            print(format_model_list())
            return 0
        result = train(cfg)
    except (UsageError, cdata.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"\n{result['model']}: test accuracy {result['test_accuracy']:.2f}% after "
        f"{result['epochs']} epochs ({result['wall_seconds']} s, "
        f"{result['train_images_per_second']} images/s); wrote {Path(cfg.out or default_out(cfg.model)) / RESULT_FILE}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
