"""Recorded training runs under ``results/``: the results table and learning curves.

Each run directory (written by :mod:`chainer_nets.train`) holds ``config.json``,
``log`` (Chainer's LogReport), ``result.json``, ``loss.png`` and ``accuracy.png``.
Nothing here is typed by hand except the published numbers of the 2016 Chainer
implementation, kept as data in :data:`IMPL_2016`::

    python -m chainer_nets.results            # markdown table of every model
    python -m chainer_nets.results --runs     # only models with a recorded run
    python -m chainer_nets.results --budget   # the shortened (budget) runs, apart

Only a run of the paper's whole recipe (no ``--epochs``, ``--lr``, ``--batch-size`` or
subset option) counts as a reproduction; a shortened run, such as the CPU budget run of
ResNet-20, is listed in its own table and never in the "ours" column.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from chainer_nets.registry import get_model_info, list_models
from chainer_nets.runfolder import CONFIG_FILE, LOG_FILE, RESULT_FILE

RESULTS_ENV = "CHAINER_NETS_RESULTS"


@dataclass(frozen=True)
class Impl2016:
    """One row of the 2016 Chainer implementation's table (paper's CIFAR-10 list)."""

    paper_no: int
    variant: str  # the variant the 2016 code trained, in its own words
    accuracy: float | None  # its CIFAR-10 test accuracy (%)
    status: str  # "matches", "below paper", ...


#: The 2016 implementation's numbers for the papers whose networks are in this package,
#: keyed by our model name for the variant it trained (from the project's table_2016.csv).
IMPL_2016: dict[str, Impl2016] = {
    "nin_aug": Impl2016(1, "Caffe reference model (with augmentation)", 90.10, "below paper"),
    "nin_bn": Impl2016(1, "Caffe reference model with BN", 91.52, "no paper number"),
    "vgg11": Impl2016(2, "model A, CIFAR-10 up-sampled to 224x224", 92.1, "no paper number"),
    "googlenet": Impl2016(
        3, "GoogLeNet, 224x224 up-sampled, no LRN, no aux heads", 91.33, "no paper figure"
    ),
    "bn_inception": Impl2016(
        4, "BN-Inception, 224x224 up-sampled, no aux heads", 94.89, "no paper figure"
    ),
    "inception_v3": Impl2016(
        5, "Inception-v3, 224x224 up-sampled, two 35x35 modules", 94.74, "no paper figure"
    ),
    "prelu_net_a": Impl2016(
        6, "model A, GAP instead of SPP, CIFAR-10 up-sampled to 224x224", 94.98, "no paper number"
    ),
    "highway_fitnet19": Impl2016(7, "Highway (Fitnet19), BN added", 93.35, "matches"),
    "resnet110": Impl2016(8, "ResNet110", 93.34, "matches"),
    "squeezenet_bn": Impl2016(
        10, "SqueezeNet with BN and simple bypass, 128x128 up-sampled", 92.63, "no paper number"
    ),
    "preresnet164": Impl2016(11, "ResNet164", 94.39, "matches"),
    "rir_wide18": Impl2016(12, "18-layer + wide RiR", 94.43, "below paper"),
    "sd_resnet110": Impl2016(13, "ResNet110", 94.76, "matches"),
    "swapout_v2_32_w4": Impl2016(14, "Swapout v2(32) W x4", 95.34, "matches"),
    "wrn28_10": Impl2016(15, "WRN28-10", 95.76, "matches"),
    "fractalnet20": Impl2016(16, "20 layers", 93.77, "below paper"),
    "densenet40_k12": Impl2016(19, "DenseNet L=40 k=12 (best epoch)", 95.12, "above paper"),
    "nas_appendix_a": Impl2016(
        22, "appendix network, one skip connection fewer, no padding (4.1M)", 90.35, "below paper"
    ),
}


def impl2016_accuracy(model: str) -> float | None:
    """The 2016 Chainer implementation's accuracy (%) for ``model``, if it trained that variant."""
    row = IMPL_2016.get(model)
    return None if row is None else row.accuracy


@dataclass
class Run:
    """One run directory read back: its config, final result and per-epoch log."""

    path: Path
    config: dict = field(default_factory=dict)
    result: dict = field(default_factory=dict)
    log: list[dict] = field(default_factory=list)

    @property
    def model(self) -> str:
        """Model name of the run."""
        return self.result.get("model") or self.config.get("config", {}).get("model", "")

    @property
    def finished(self) -> bool:
        """Whether the run wrote its result file."""
        return bool(self.result)

    @property
    def changed_options(self) -> dict:
        """The options that moved the run away from the paper's recipe (empty for a full run)."""
        cfg = self.config.get("config", {})
        return {k: cfg[k] for k in RECIPE_CHANGING_OPTIONS if cfg.get(k) is not None}

    @property
    def full_recipe(self) -> bool:
        """Whether the run trained with the paper's whole recipe (a reproduction)."""
        return not self.changed_options


#: Training options that change the paper's recipe: a run with any of them set is a budget run.
RECIPE_CHANGING_OPTIONS = ("epochs", "lr", "batch_size", "train_subset", "test_subset")


def results_dir() -> Path:
    """The results folder: ``$CHAINER_NETS_RESULTS`` or ``results/`` at the repository root."""
    env = os.environ.get(RESULTS_ENV)
    return Path(env) if env else Path(__file__).resolve().parent.parent / "results"


def _json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def load_run(path: str | os.PathLike) -> Run:
    """Read one run directory (missing files leave their fields empty)."""
    p = Path(path)
    return Run(p, _json(p / CONFIG_FILE, {}), _json(p / RESULT_FILE, {}), _json(p / LOG_FILE, []))


def list_runs(root: str | os.PathLike | None = None) -> list[Run]:
    """Every finished run (a directory with ``result.json``) under ``root``, sorted by path."""
    base = Path(root) if root is not None else results_dir()
    if not base.is_dir():
        return []
    runs = [load_run(p.parent) for p in sorted(base.glob(f"**/{RESULT_FILE}"))]
    return [r for r in runs if r.finished]


def find_run(model: str, root: str | os.PathLike | None = None) -> Run | None:
    """The recorded full-recipe run of ``model`` (the latest finished one), or None."""
    runs = [r for r in list_runs(root) if r.model == model and r.full_recipe]
    return max(runs, key=lambda r: r.result.get("finished", "")) if runs else None


def budget_runs(model: str | None = None, root: str | os.PathLike | None = None) -> list[Run]:
    """Finished runs that shortened or changed the recipe (of ``model`` if given), by path."""
    return [r for r in list_runs(root) if not r.full_recipe and (model is None or r.model == model)]


BUDGET_HEADER = [
    "run",
    "model",
    "changed",
    "seed",
    "test acc % (last iteration)",
    "train images/s",
    "device",
    "wall time",
    "command",
]


def twin_dir() -> Path:
    """Where the PyTorch twins of the budget runs write their results (``benchmarks/cpu``)."""
    return results_dir().parent / "benchmarks" / "cpu" / "budget_twin"


def budget_twins(model: str, root: str | os.PathLike | None = None) -> list[dict]:
    """Recorded PyTorch-twin runs of ``model``'s budget run (``benchmarks/cpu/budget_twin.py``),
    by seed; each holds ``test_accuracy`` (a fraction), ``seed``, ``epochs`` and its ``log``."""
    base = Path(root) if root is not None else twin_dir()
    runs = [_json(p, {}) for p in sorted(base.glob(f"{model}_*.json"))]
    return sorted((r for r in runs if r.get("log")), key=lambda r: r.get("seed", 0))


def budget_table(model: str | None = None, root: str | os.PathLike | None = None) -> str:
    """The budget runs in GitHub markdown (what they changed, accuracy, speed, time), followed by
    the PyTorch twins recorded for their models."""
    rows = []
    for r in budget_runs(model, root):
        res, cfg = r.result, r.config.get("config", {})
        changed = " ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in r.changed_options.items())
        rows.append(
            [
                r.path.name,
                r.model,
                changed,
                str(cfg.get("seed", "—")),
                _fmt(res.get("test_accuracy")),
                str(res.get("train_images_per_second", "—")),
                res.get("device", "—"),
                _wall(res.get("wall_seconds")),
                f"`{res.get('command', '')}`",
            ]
        )
    models = sorted({r.model for r in budget_runs(model, root)})
    for m in models:  # the PyTorch twins recorded next to them (benchmarks/cpu/budget_twin.py)
        for t in budget_twins(m):
            rows.append(
                [
                    "PyTorch twin",
                    m,
                    f"--epochs {t.get('epochs', 0):g}",
                    str(t.get("seed", "—")),
                    _fmt(100 * t["test_accuracy"]) if "test_accuracy" in t else "—",
                    f"{t.get('train_images_per_second', 0):.1f}",
                    f"CPU, PyTorch {t.get('versions', {}).get('torch', '?')}, "
                    f"{t.get('threads', '?')} thread(s)",
                    _wall(t.get("wall_seconds")),
                    f"`{t.get('command', '')}`",
                ]
            )
    return md_table(BUDGET_HEADER, rows)


def train_command(model: str, device: str = "@cupy:0") -> str:
    """The command that records the full-recipe run of ``model`` under ``results/``."""
    return f"python -m chainer_nets.train --model {model} --device {device} --out results/{model}"


def md_table(header: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured markdown table (the one formatter of the results and notebook tables)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    h, m = divmod(int(round(seconds / 60)), 60)
    return f"{h} h {m:02d} min" if h else f"{m} min" if m else f"{seconds:.0f} s"


def table_rows(
    models: list[str] | None = None, root: str | os.PathLike | None = None, runs_only: bool = False
) -> list[list[str]]:
    """Rows of the results table: model, paper, 2016 Chainer, ours, epochs, device, wall, command."""
    names = models if models is not None else [i.name for i in list_models()]
    runs = {r.model: r for r in list_runs(root) if r.full_recipe}
    rows = []
    for name in names:
        info = get_model_info(name)
        run = runs.get(name)
        if run is None and runs_only:
            continue
        if name in runs:  # the latest finished run of this model
            run = find_run(name, root)
        res = run.result if run else {}
        rows.append(
            [
                name,
                _fmt(info.paper_accuracy),
                _fmt(impl2016_accuracy(name)),
                _fmt(res.get("test_accuracy")) if run else "not yet reproduced",
                str(res.get("epochs", "—")),
                res.get("device", "—"),
                _wall(res.get("wall_seconds")),
                f"`{res.get('command') or train_command(name)}`",
            ]
        )
    return rows


HEADER = [
    "model",
    "paper acc",
    "2016 Chainer acc",
    "ours (last epoch)",
    "epochs",
    "device",
    "wall time",
    "command",
]


def markdown_table(
    models: list[str] | None = None, root: str | os.PathLike | None = None, runs_only: bool = False
) -> str:
    """The results table in GitHub markdown (accuracies are CIFAR-10 test %, last epoch)."""
    return md_table(HEADER, table_rows(models, root, runs_only))


def plot_log(log: list[dict], title: str = ""):
    """Loss and accuracy per epoch from a LogReport log (train and test), side by side."""
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8, 3), dpi=80)
    epochs = [e["epoch"] for e in log]
    for key, label, ax, scale in [
        ("main/loss", "train", ax_loss, 1),
        ("test/main/loss", "test", ax_loss, 1),
        ("main/accuracy", "train", ax_acc, 100),
        ("test/main/accuracy", "test", ax_acc, 100),
        ("val/main/accuracy", "validation", ax_acc, 100),
    ]:
        pts = [(ep, e[key] * scale) for ep, e in zip(epochs, log, strict=True) if key in e]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o" if len(pts) < 20 else None, label=label)
    ax_loss.set(xlabel="epoch", ylabel="softmax cross-entropy")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.show()
    return fig


def plot_run(run: Run):
    """Learning curves of a recorded run."""
    return plot_log(run.log, f"{run.model} ({run.result.get('device', '?')})")


def main(argv: list[str] | None = None) -> int:
    """Print the results table (``python -m chainer_nets.results``)."""
    p = argparse.ArgumentParser(prog="python -m chainer_nets.results", description=__doc__)
    p.add_argument("--root", help="results folder (default: results/ of the repository)")
    p.add_argument("--runs", action="store_true", help="only models with a recorded run")
    p.add_argument("--budget", action="store_true", help="the shortened (budget) runs instead")
    p.add_argument("models", nargs="*", help="model names (default: all registered)")
    a = p.parse_args(argv)
    if a.budget:
        print(budget_table(a.models[0] if len(a.models) == 1 else None, a.root))
        return 0
    print(markdown_table(a.models or None, a.root, a.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
