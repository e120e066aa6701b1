"""Train a registered model on CIFAR-10 with its paper's recipe.

    python -m chainer_nets.train --model wrn28_10 --device @cupy:0
    python -m chainer_nets.train --list
    python -m chainer_nets.train --model resnet20 --quick          # a short CPU run

Built on Chainer's Trainer. :func:`train` is a list of steps: check every
option and the data before anything is written; take the run folder
(:mod:`chainer_nets.runfolder`: lock, file names, atomic writes); build the
model, optimizer and the Trainer with the extensions of
:mod:`chainer_nets.extensions` (the learning rate follows
:class:`chainer_nets.schedule.Schedule`, a function of the iteration, so a
resume is exact); restore the newest loadable snapshot when resuming; train;
write ``model.npz`` and, once, ``result.json`` with the last-iteration test
accuracy, wall time and images/s summed over every resumed segment, device,
versions, the command and the recipe.

Exit status of the command: 0 done, 2 bad input (one line saying which),
1 failure while running (one line naming the last good snapshot), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import chainer
import chainer.links as L
import numpy as np

from chainer_nets import data as cdata
from chainer_nets import extensions as ext
from chainer_nets import runfolder as rf
from chainer_nets.evaluate import evaluate_arrays
from chainer_nets.recipes import Recipe, UnknownRecipeError, get_recipe
from chainer_nets.registry import (
    ModelInfo,
    UnknownModelError,
    count_params,
    get_model_info,
    list_models,
)
from chainer_nets.runfolder import RunError, UsageError
from chainer_nets.schedule import Schedule

#: What ``--quick`` means: a run that finishes in about a minute on a laptop CPU.
QUICK = {"train_subset": 2000, "test_subset": 1000, "epochs": 2}
#: Options that must be the same when a run is resumed.
RESUME_KEYS = ("model", "epochs", "batch_size", "lr", "seed", "train_subset", "val_split", "dtype")


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
# Checks (before anything is written)


def _finite_positive(x: float | None) -> bool:
    return x is None or (math.isfinite(x) and x > 0)


def validate(cfg: TrainConfig) -> tuple[ModelInfo, Recipe, chainer.backend.Device]:
    """Check every option and the run folder; return (model info, recipe, device). UsageError."""
    try:
        info = get_model_info(cfg.model)
        recipe = get_recipe(info.recipe)
    except (UnknownModelError, UnknownRecipeError) as e:
        raise UsageError(str(e)) from e
    checks = [
        (_finite_positive(cfg.epochs), f"--epochs must be > 0 and finite, got {cfg.epochs}"),
        (
            cfg.batch_size is None or cfg.batch_size > 0,
            f"--batch-size must be > 0, got {cfg.batch_size}",
        ),
        (_finite_positive(cfg.lr), f"--lr must be > 0 and finite, got {cfg.lr}"),
        (cfg.train_subset is None or cfg.train_subset > 0, "--train-subset must be > 0"),
        (cfg.test_subset is None or cfg.test_subset > 0, "--test-subset must be > 0"),
        (cfg.val_split is None or 0 < cfg.val_split < 50000, "--val-split must be in 1..49999"),
        (cfg.snapshot_every > 0, "--snapshot-every must be > 0"),
        (
            cfg.dtype in ("float32", "mixed16"),
            f"--dtype must be float32 or mixed16, got {cfg.dtype}",
        ),
        (_finite_positive(cfg.loss_scale), "--loss-scale must be > 0 and finite"),
        (0 <= cfg.seed < 2**32, f"--seed must be in 0..{2**32 - 1}, got {cfg.seed}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    device = rf.resolve_device(cfg.device)
    out = out_dir(cfg)
    rf.check_out(out)
    rf.check_free(out, cfg.resume)
    if cfg.resume:
        if not (out / rf.CONFIG_FILE).is_file():
            raise UsageError(
                f"--resume: {out / rf.CONFIG_FILE} not found; nothing to resume in {out}"
            )
        prev = rf.read_config(out)
        diff = [k for k in RESUME_KEYS if prev["config"].get(k) != getattr(cfg, k)]
        if diff:
            raise UsageError(
                f"--resume: options {', '.join(diff)} differ from the run in {out}; "
                "resume with the same options"
            )
    return info, recipe, device


def default_out(model: str) -> str:
    """Default output directory of a run of ``model``."""
    return os.path.join("runs", model)


def out_dir(cfg: TrainConfig) -> Path:
    """The run folder of ``cfg``."""
    return Path(cfg.out or default_out(cfg.model))


@dataclass
class RunData:
    """The arrays one run trains and scores on, and the normalisation of its training split."""

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray]
    mean: np.ndarray
    std: np.ndarray


def load_data(cfg: TrainConfig, batch: int) -> RunData:
    """CIFAR-10 split and subsetted as ``cfg`` asks; DataError or UsageError when it cannot be."""
    ds = cdata.load_cifar10(cfg.data_dir)
    if cfg.val_split:
        (tx, ty), val = cdata.split_validation(ds, cfg.val_split)
    else:
        (tx, ty), val = (ds.train_x, ds.train_y), None
    after = f" left after --val-split {cfg.val_split}" if cfg.val_split else ""
    if cfg.train_subset is not None and cfg.train_subset > len(tx):
        raise UsageError(
            f"--train-subset {cfg.train_subset} is more than the {len(tx)} training images{after}"
        )
    if cfg.test_subset is not None and cfg.test_subset > len(ds.test_x):
        raise UsageError(
            f"--test-subset {cfg.test_subset} is more than the {len(ds.test_x)} test images"
        )
    mean, std = cdata.channel_stats(tx)
    tx, ty = cdata.take_subset(tx, ty, cfg.train_subset)
    if batch > len(tx):
        which = "--batch-size" if cfg.batch_size else "the recipe's batch size"
        raise UsageError(
            f"{which} {batch} is larger than the {len(tx)} training images{after}: "
            "an epoch would not hold one batch"
        )
    test = cdata.take_subset(ds.test_x, ds.test_y, cfg.test_subset)
    return RunData(train=(tx, ty), val=val, test=test, mean=mean, std=std)


# ---------------------------------------------------------------------------------------------
# The parts of a run


def write_config(
    out: Path, cfg: TrainConfig, recipe: Recipe, info: ModelInfo, schedule: Schedule, d: RunData
) -> None:
    """Record the run's options, recipe, schedule and normalisation in ``config.json``."""
    rf.write_json(
        out / rf.CONFIG_FILE,
        {
            "config": dataclasses.asdict(cfg),
            "recipe": dataclasses.asdict(recipe),
            "model_info": {k: v for k, v in dataclasses.asdict(info).items() if k != "factory"},
            "stop_iteration": schedule.stop,
            "milestones_iteration": schedule.milestones,
            "warmup_iterations": schedule.warmup_iterations,
            "base_lr": schedule.base_lr,
            "batch_size": cfg.batch_size or recipe.batch_size,
            "train_images": len(d.train[0]),
            "test_images": len(d.test[0]),
            "val_images": 0 if d.val is None else len(d.val[0]),
            "normalize_mean": d.mean.tolist(),
            "normalize_std": d.std.tolist(),
        },
    )


def build_optimizer(
    net: chainer.Chain, recipe: Recipe, cfg: TrainConfig, device, base_lr: float
) -> chainer.Optimizer:
    """The recipe's optimizer on ``net`` (wrapped in a Classifier on ``device``)."""
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
    return optimizer


def restore(run: ext.Run, out: Path, cfg: TrainConfig) -> None:
    """Load the newest loadable snapshot into the trainer (iteration, weights, optimizer,
    iterator, random streams, timing); refuse when the run has snapshots no more."""
    path = rf.load_newest_snapshot(out, run.trainer)
    if path is not None:
        run.snapshot.last_good = path
        return
    log = rf.read_json(out / rf.LOG_FILE) or []
    done = max((e.get("epoch", 0) for e in log if isinstance(e, dict)), default=0)
    if done > cfg.snapshot_every:  # == when killed between the first log entry and snapshot
        raise UsageError(
            f"--resume: no snapshot in {out}, although its log reaches epoch {done} "
            "(the snapshots were removed); start a new run with another --out"
        )
    print(f"note: no snapshot yet in {out}; starting from the beginning", file=sys.stderr)


def _run_loop(run: ext.Run, out: Path) -> None:
    """trainer.run() with failures turned into one-line errors naming the last good snapshot."""
    last = lambda: run.snapshot.last_good or "none yet"  # noqa: E731
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # NaN check reports
            run.trainer.run(show_loop_exception_msg=False)
    except KeyboardInterrupt:
        it = run.updater.iteration
        raise KeyboardInterrupt(
            f"interrupted at iteration {it}; last good snapshot: {last()}; "
            f"continue with the same command and --resume"
        ) from None
    except OSError as e:
        raise RunError(_write_failure(e, out, last())) from e
    finally:
        run.updater.close_timing()


def _write_failure(e: OSError, out: Path, last: object) -> str:
    what = "out of space" if rf.is_no_space(e) else "cannot write"
    return (
        f"{what} in {out} ({e.strerror or e}: {e.filename or ''}); last good snapshot: {last}; "
        "free the space and continue with --resume"
    )


def finish(
    run: ext.Run, net: chainer.Chain, cfg: TrainConfig, info: ModelInfo, recipe: Recipe,
    d: RunData, device, out: Path,
) -> dict:  # fmt: skip
    """Save the final weights, score them and write ``result.json`` (once)."""
    rf.save_npz(out / rf.MODEL_FILE, net)
    test = evaluate_arrays(net, *d.test, run.eval_conv, device, run.eval_batch)
    val = (
        None
        if d.val is None
        else evaluate_arrays(net, *d.val, run.eval_conv, device, run.eval_batch)
    )
    batch = cfg.batch_size or recipe.batch_size
    u = run.updater
    result = {
        "model": cfg.model,
        "paper": info.paper,
        "arxiv": info.arxiv,
        "paper_accuracy": info.paper_accuracy,
        "test_accuracy": round(100 * test["accuracy"], 2),
        "test_loss": test["loss"],
        "val_accuracy": None if val is None else round(100 * val["accuracy"], 2),
        "accuracy_protocol": "model after the last iteration, single central view; no epoch selection",
        "iterations": u.iteration,
        "epochs": round(u.epoch_detail, 3),
        "train_images": len(d.train[0]),
        "test_images": len(d.test[0]),
        "parameters": count_params(net),
        "wall_seconds": round(run.trainer.elapsed_time, 1),
        "train_images_per_second": round(u.images_per_second(batch), 1),
        "device": rf.device_name(device),
        "dtype": cfg.dtype,
        "versions": rf.versions(),
        "command": cfg.command,
        "recipe": recipe.name,
        "recipe_summary": recipe.summary(),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    rf.write_json(out / rf.RESULT_FILE, result)
    return result


# ---------------------------------------------------------------------------------------------
# The run


def train(cfg: TrainConfig, stop_at_epoch: int | None = None) -> dict:
    """Run (or resume) training; return the result dict, also written to ``result.json``.

    ``stop_at_epoch`` ends this invocation early, as an interruption would (the
    schedule and length stay those of the full run; no result file is written).
    Resuming a finished run changes nothing and returns its result with
    ``already_finished`` set.
    """
    info, recipe, device = validate(cfg)
    out = out_dir(cfg)
    if cfg.resume and (done := rf.read_json(out / rf.RESULT_FILE)) is not None:
        return {**done, "already_finished": True}
    batch = cfg.batch_size or recipe.batch_size
    data = load_data(cfg, batch)  # raises DataError / UsageError before anything is written
    schedule = Schedule.from_recipe(recipe, len(data.train[0]) / batch, cfg.epochs, cfg.lr)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out} cannot be created: {e.strerror or e}") from e
    with rf.RunLock(out, cfg.command):
        try:
            rf.clean_stale_temps(out)
            rf.check_free(out, cfg.resume, locked=True)  # again, now that the folder is ours
            if not cfg.resume:
                write_config(out, cfg, recipe, info, schedule, data)
        except OSError as e:
            raise RunError(_write_failure(e, out, "none yet")) from e
        np.random.seed(cfg.seed)
        if device.xp is not np:
            device.xp.random.seed(cfg.seed)
        with chainer.using_config(
            "dtype", chainer.mixed16 if cfg.dtype == "mixed16" else np.float32
        ):
            net = info.build()
            optimizer = build_optimizer(net, recipe, cfg, device, schedule.base_lr)
            run = ext.build_trainer(
                cfg, recipe, net, optimizer, schedule, data, device, out, stop_at_epoch
            )
            if cfg.resume:
                restore(run, out, cfg)
            _run_loop(run, out)
            if stop_at_epoch is not None and run.updater.iteration < schedule.stop:
                return {"interrupted_at_iteration": run.updater.iteration}
            try:
                return finish(run, net, cfg, info, recipe, data, device, out)
            except OSError as e:
                raise RunError(_write_failure(e, out, run.snapshot.last_good)) from e


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
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"\n{e or 'interrupted'}", file=sys.stderr)
        return 130
    summary = (
        f"{result['model']}: test accuracy {result['test_accuracy']:.2f}% after "
        f"{result['epochs']} epochs ({result['wall_seconds']} s, "
        f"{result['train_images_per_second']} images/s)"
    )
    if result.get("already_finished"):
        print(f"{out_dir(cfg)} holds a finished run, nothing to resume: {summary}")
    else:
        print(f"\n{summary}; wrote {out_dir(cfg) / rf.RESULT_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
