"""The Trainer's parts that Chainer does not provide, each a small class.

- :class:`ScheduledUpdater` sets the scheduled learning rate before every update
  from the iteration it is about to do (so a resumed run continues exactly) and
  times the updates (images/s), synchronising the device only at epoch ends.
- :class:`ImageWeightedEvaluator` scores a data set per epoch, averaged over images.
- :class:`NonFiniteCheck` stops a diverged run: every ``every`` iterations and at
  every epoch end (before the snapshot), with one host read per check.
- :class:`Snapshot` writes the trainer's state atomically and keeps the newest two.
- :class:`RandomStateKeeper` saves NumPy's and the augmentation's generators, and
  re-seeds CuPy's (whose state cannot be read out) from the iteration at every
  epoch end and after a resume.
- :class:`EarlyStop` ends one invocation after an epoch, as an interruption would.

:func:`build_trainer` puts them together with Chainer's reports into the Trainer of a run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import chainer
import numpy as np
from chainer import training
from chainer.training import extensions as chx

from chainer_nets import data as cdata
from chainer_nets import runfolder
from chainer_nets.evaluate import evaluate_arrays
from chainer_nets.runfolder import RunError
from chainer_nets.schedule import Schedule

if TYPE_CHECKING:
    from chainer_nets.recipes import Recipe
    from chainer_nets.train import RunData, TrainConfig

#: Iterations between two divergence checks (each costs one read from the device).
NONFINITE_CHECK_EVERY = 100


class ScheduledUpdater(training.updaters.StandardUpdater):
    """StandardUpdater that follows a :class:`Schedule` and measures images/s.

    Timing runs from the first update of an epoch to its last, with the device
    synchronised at both ends (never per step), so on a GPU it measures the
    work rather than the kernel launches; the totals travel in snapshots, so a
    resumed run's images/s covers every segment.
    """

    def __init__(self, iterator, optimizer, schedule: Schedule, **kwargs) -> None:
        super().__init__(iterator, optimizer, **kwargs)
        self.schedule = schedule
        self.sync_device = chainer.get_device(kwargs.get("device") or "@numpy")
        self.update_seconds = 0.0
        self.timed_updates = 0
        self._t0: float | None = None
        self._n = 0

    def update(self) -> None:
        """One update at the scheduled rate; afterwards the optimizer shows the next rate."""
        opt = self.get_optimizer("main")
        self.schedule.apply(opt, self.iteration)
        super().update()
        self.schedule.apply(opt, self.iteration)

    def update_core(self) -> None:
        """One optimizer step; the epoch's timing opens before its first and closes after its last."""
        if self._t0 is None:
            runfolder.synchronize(self.sync_device)
            self._t0, self._n = time.perf_counter(), 0
        super().update_core()
        self._n += 1
        if self.is_new_epoch:
            self.close_timing()

    def close_timing(self) -> None:
        """Add the open stretch of updates (synchronised) to the totals."""
        if self._t0 is None:
            return
        runfolder.synchronize(self.sync_device)
        self.update_seconds += time.perf_counter() - self._t0
        self.timed_updates += self._n
        self._t0 = None

    def images_per_second(self, batch: int) -> float:
        """Training throughput over every timed update so far."""
        return self.timed_updates * batch / max(self.update_seconds, 1e-9)

    def serialize(self, serializer: chainer.AbstractSerializer) -> None:
        """The standard state plus the timing totals."""
        super().serialize(serializer)
        self.update_seconds = float(serializer("update_seconds", self.update_seconds))
        self.timed_updates = int(serializer("timed_updates", self.timed_updates))


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


class Diverged(RunError):
    """The loss or a weight stopped being a finite number."""


class NonFiniteCheck(training.Extension):
    """Stops the run when the loss or any weight is not finite, checked every ``every``
    iterations and at every epoch end (before the snapshot, which so never holds NaN)."""

    trigger = (1, "iteration")
    priority = training.PRIORITY_WRITER + 10

    def __init__(
        self, snapshot: Snapshot | None = None, every: int = NONFINITE_CHECK_EVERY, advice: str = ""
    ) -> None:
        self.snapshot, self.every, self.advice = snapshot, every, advice
        self.checks = 0

    def __call__(self, trainer: training.Trainer) -> None:
        """Check when due; raise :class:`Diverged` naming the iteration and the last good snapshot."""
        u = trainer.updater
        if not (u.is_new_epoch or u.iteration % self.every == 0):
            return
        self.checks += 1
        if not self.all_finite(trainer):
            lr = u.get_optimizer("main").lr
            last = self.snapshot.last_good if self.snapshot else None
            raise Diverged(
                f"training diverged: the loss or the weights are not finite at iteration "
                f"{u.iteration} (epoch {u.epoch_detail:.2f}, lr {lr:g}); last good snapshot: "
                f"{last or 'none yet'}. {self.advice}".strip()
            )

    @staticmethod
    def all_finite(trainer: training.Trainer) -> bool:
        """Whether the last loss and every parameter are finite (one read from the device)."""
        opt = trainer.updater.get_optimizer("main")
        xp = opt.target.xp
        ok = xp.asarray(True)
        loss = trainer.observation.get("main/loss")
        if loss is not None:
            ok = ok & xp.isfinite(getattr(loss, "array", loss)).all()
        for param in opt.target.params():
            if param.array is not None:
                ok = ok & xp.isfinite(param.array).all()
        return bool(ok)


class Snapshot(training.Extension):
    """Writes ``snapshot_epoch_N`` atomically and deletes the tool's older snapshots beyond
    the newest :data:`~chainer_nets.runfolder.SNAPSHOTS_KEPT`."""

    trigger = (1, "epoch")
    priority = -100

    def __init__(self, out: Path, keep: int = runfolder.SNAPSHOTS_KEPT) -> None:
        self.out, self.keep = Path(out), keep
        self.last_good: Path | None = None  # written by this run or loaded on resume

    def __call__(self, trainer: training.Trainer) -> None:
        """Save now, then prune."""
        epoch = trainer.updater.epoch
        path = self.out / runfolder.snapshot_name(epoch)
        runfolder.save_npz(path, trainer)
        self.last_good = path
        for old in runfolder.list_snapshots(self.out)[self.keep :]:
            if runfolder.snapshot_epoch(old.name) < epoch:
                old.unlink(missing_ok=True)


class PublishPlots(training.Extension):
    """Moves the plots PlotReport drew under temporary names into place (atomic plots)."""

    trigger = (1, "epoch")
    priority = -50  # after PlotReport

    def __init__(self, out: Path, names: tuple[str, ...]) -> None:
        self.out, self.names = Path(out), names

    def __call__(self, trainer: training.Trainer) -> None:
        """Rename each freshly drawn plot over the previous one."""
        for name in self.names:
            tmp = self.out / runfolder.plot_tmp_name(name)
            if tmp.is_file():
                os.replace(tmp, self.out / name)


class RandomStateKeeper(training.Extension):
    """Keeps every random stream of the run resumable.

    NumPy's global generator and the augmentation generator are saved in
    snapshots. CuPy's generator state cannot be read out, so on a GPU its stream
    is re-seeded from (seed, iteration) at every epoch end and after a snapshot
    is loaded: the uninterrupted and the resumed run then draw the same masks.
    On the CPU CuPy is never touched.
    """

    trigger = (1, "epoch")
    priority = -200  # after the evaluators and the snapshot, which may draw from the streams

    def __init__(
        self,
        converter: cdata.AugmentConverter,
        device: chainer.backend.Device | None = None,
        seed: int = 0,
        updater: training.Updater | None = None,
    ) -> None:
        self.converter, self.device, self.seed, self.updater = converter, device, seed, updater

    def reseed_device(self, iteration: int) -> None:
        """Re-seed the device's generator from (seed, iteration); nothing on the CPU."""
        if self.device is None or self.device.xp is np:
            return
        state = np.random.SeedSequence([self.seed, iteration]).generate_state(1)[0]
        self.device.xp.random.seed(int(state))

    def __call__(self, trainer: training.Trainer) -> None:
        """At each epoch end, re-seed the device's stream."""
        self.reseed_device(trainer.updater.iteration)

    def serialize(self, serializer: chainer.AbstractSerializer) -> None:
        """Write or read the host generators; after reading, re-seed the device's."""
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        keys = serializer("numpy_keys", keys.copy())
        meta = serializer("numpy_meta", np.array([pos, has_gauss, gauss], dtype=np.float64))
        aug = serializer("augment", self.converter.rng_state())
        if isinstance(serializer, chainer.serializer.Deserializer):
            np.random.set_state((name, keys, int(meta[0]), int(meta[1]), float(meta[2])))
            self.converter.set_rng_state(str(aug))
            if self.updater is not None:  # restored before the extensions
                self.reseed_device(self.updater.iteration)


class EarlyStop:
    """Stop trigger: the full run's length, or an earlier epoch (the schedule stays the full run's)."""

    def __init__(self, stop: int, epoch: int | None = None) -> None:
        self.stop, self.epoch = stop, epoch

    def __call__(self, trainer: training.Trainer) -> bool:
        """Whether to stop now."""
        u = trainer.updater
        early = self.epoch is not None and u.is_new_epoch and u.epoch >= self.epoch
        return u.iteration >= self.stop or early

    def get_training_length(self) -> tuple[int, str]:
        """The full run's length, for the progress bar."""
        return self.stop, "iteration"


# ---------------------------------------------------------------------------------------------
# The Trainer of one run


@dataclass
class Run:
    """A built Trainer and the parts :func:`train` reads after it ran."""

    trainer: training.Trainer
    updater: ScheduledUpdater
    snapshot: Snapshot
    eval_conv: cdata.AugmentConverter
    eval_batch: int


def build_trainer(
    cfg: TrainConfig,
    recipe: Recipe,
    net: chainer.Chain,
    optimizer: chainer.Optimizer,
    schedule: Schedule,
    d: RunData,
    device,
    out: Path,
    stop_at_epoch: int | None,
) -> Run:
    """The Trainer with its updater, evaluators, reports, checks and snapshots."""
    batch = cfg.batch_size or recipe.batch_size
    in_dtype = np.float16 if cfg.dtype == "mixed16" else np.float32
    aug = recipe.augment
    train_conv = cdata.AugmentConverter(
        d.mean, d.std, augment=True, pad=aug.pad, pad_mode=aug.pad_mode, flip=aug.flip,
        seed=cfg.seed, dtype=in_dtype,
    )  # fmt: skip
    eval_conv = cdata.AugmentConverter(d.mean, d.std, augment=False, dtype=in_dtype)
    train_iter = chainer.iterators.SerialIterator(
        chainer.datasets.TupleDataset(*d.train),
        batch,
        order_sampler=cdata.SeededOrderSampler(cfg.seed),
    )
    loss_scale = cfg.loss_scale or (1024.0 if cfg.dtype == "mixed16" else None)
    updater = ScheduledUpdater(
        train_iter, optimizer, schedule, converter=train_conv, device=device, loss_scale=loss_scale
    )
    trainer = training.Trainer(updater, EarlyStop(schedule.stop, stop_at_epoch), out=str(out))
    eval_batch = max(batch, 256)
    trainer.extend(RandomStateKeeper(train_conv, device, cfg.seed, updater), name="rng")
    if d.val is not None:
        trainer.extend(
            ImageWeightedEvaluator(net, *d.val, eval_conv, device, eval_batch), name="val"
        )
    trainer.extend(ImageWeightedEvaluator(net, *d.test, eval_conv, device, eval_batch), name="test")
    snapshot = Snapshot(out)
    advice = (
        f"Try a smaller --lr (this run's is {schedule.base_lr:g}; the recipe's is {recipe.lr:g})."
    )
    trainer.extend(NonFiniteCheck(snapshot, advice=advice), name="nonfinite")
    trainer.extend(chx.observe_lr())
    trainer.extend(chx.LogReport(trigger=(1, "epoch")))
    keys = ["main/loss", "main/accuracy"]
    keys += ["val/main/accuracy"] if d.val is not None else []
    keys += ["test/main/loss", "test/main/accuracy"]
    if cfg.print_report:
        trainer.extend(chx.PrintReport(["epoch", "iteration", *keys, "lr", "elapsed_time"]))
    if cfg.progress:
        trainer.extend(chx.ProgressBar(update_interval=10))
    plots = {
        "loss.png": ["main/loss", "val/main/loss", "test/main/loss"],
        "accuracy.png": ["main/accuracy", "val/main/accuracy", "test/main/accuracy"],
    }
    for name, ys in plots.items():
        ys = [y for y in ys if d.val is not None or not y.startswith("val/")]
        trainer.extend(chx.PlotReport(ys, "epoch", file_name=runfolder.plot_tmp_name(name)))
    trainer.extend(PublishPlots(out, tuple(plots)), name="publish_plots")
    trainer.extend(snapshot, name="snapshot", trigger=(cfg.snapshot_every, "epoch"))
    return Run(trainer, updater, snapshot, eval_conv, eval_batch)
