"""The helpers the paper notebooks in ``notebooks/`` call (imported as ``nb``).

Every notebook follows one skeleton (see ``notebooks/README.md``) and uses these
helpers for its repetitive parts:

* reading: :func:`show_md`, :func:`show_source` (the real code of an equation),
  :func:`draw_block` (a block diagram drawn with matplotlib from a short description);
* the network: :func:`shape_table` (one forward pass: shapes and parameters of every
  stage), :func:`param_check` (our count against a named reference figure);
* the recipe: :func:`show_recipe`;
* the experiment: :func:`quick_settings` (the reader's settings, lighter in CI),
  :func:`register_sibling`, :func:`quick_train`, :func:`plot_runs`, :func:`noise_level`;
* the full run: :func:`full_train`, :func:`reproduction` (paper / 2016 Chainer / ours,
  with an estimate of the GPU time of the full recipe).

Rendering the notebooks is a development command kept apart, in
:mod:`chainer_nets.notebook_render`.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import tempfile
import textwrap
import time
from pathlib import Path

# isort: off
import chainer_nets  # noqa: F401  (the compat layer must come before chainer)
# isort: on

import chainer  # noqa: E402
import numpy as np  # noqa: E402

from chainer_nets import results as cresults  # noqa: E402
from chainer_nets.notebook_diagram import draw_block  # noqa: E402, F401  (re-exported)
from chainer_nets.notebook_model import (  # noqa: E402, F401  (re-exported for the cells)
    PARAM_SOURCES,
    _display,
    forward_flops,
    param_check,
    shape_table,
    show_md,
    trace,
)
from chainer_nets.notebook_render import CI_ENV  # noqa: E402
from chainer_nets.registry import (  # noqa: E402
    ModelInfo,
    get_model_info,
    register_once,
)
from chainer_nets.results import md_table  # noqa: E402, F401  (re-exported for the cells)
from chainer_nets.runfolder import CONFIG_FILE, LOG_FILE, MODEL_FILE, RESULT_FILE  # noqa: E402

#: Sustained float32 training throughput assumed by :func:`gpu_hours` (TFLOP/s): a round figure
#: for Chainer's im2col + cuBLAS path on one recent data-centre GPU, not a measurement.
ASSUMED_GPU_TFLOPS = 10.0
CIFAR10_TRAIN_IMAGES = 50_000


def show_source(obj, member: str | None = None) -> None:
    """Display the real source code of a class, function or ``Class.member``."""
    target = getattr(obj, member) if member else obj
    src = inspect.getsource(target)
    where = f"{inspect.getmodule(target).__name__}"
    show_md(f"`{where}`:\n\n```python\n{textwrap.dedent(src)}\n```")


def setup_cpu_fast() -> bool:
    """Switch on the package's faster NumPy convolution path if available; True if on."""
    try:
        from chainer_nets import cpu_fast

        if not cpu_fast.is_installed():
            cpu_fast.install()
        return cpu_fast.is_enabled()
    except Exception:  # optional: Chainer's own NumPy path is always correct
        return False


# ---------------------------------------------------------------------------------------------
# Recipe and the experiment


def show_recipe(name: str, note: str = ""):
    """Print a recipe's summary (plus ``note``) and its listed departures from the paper."""
    from chainer_nets.recipes import get_recipe

    recipe = get_recipe(name)
    print(recipe.summary() + (f"; {note}" if note else ""))
    for departure in recipe.departures:
        print("-", departure)
    return recipe


def quick_settings(quick: dict, ci: dict | None = None) -> dict:
    """The notebook's quick settings; when the tests run it (CI), updated by ``ci`` (lighter)."""
    if os.environ.get(CI_ENV) == "1" and ci:
        print(f"CI run: lighter settings {ci} instead of the reader's {quick}")
        return {**quick, **ci}
    return dict(quick)


def is_ci() -> bool:
    """Whether the notebook is being executed by the tests with their lighter settings."""
    return os.environ.get(CI_ENV) == "1"


def register_sibling(
    name: str, like: str, factory, description: str, recipe: str | None = None, **kwargs
) -> ModelInfo:
    """Register (in this process only) a small member of ``like``'s family so that
    :func:`quick_train` can train it by name; it carries no paper numbers."""
    base = get_model_info(like)
    return register_once(
        ModelInfo(
            name=name,
            factory=factory,
            kwargs=kwargs,
            paper_no=base.paper_no,
            paper=base.paper,
            arxiv=base.arxiv,
            recipe=recipe or base.recipe,
            paper_accuracy=None,
            paper_params=None,
            description=description,
            params_counting=base.params_counting,
        )
    )


def quick_train(
    model: str,
    train_subset: int,
    test_subset: int,
    epochs: float,
    batch_size: int | None = None,
    lr: float | None = None,
    device: str = "@numpy",
    seed: int = 0,
    out: str | None = None,
    plot: bool = True,
    keep_model: bool = False,
) -> dict:
    """Train ``model`` on a CIFAR-10 subset with its recipe squeezed into ``epochs`` (into a
    temporary folder unless ``out``); return ``train``'s result dict plus the per-epoch ``log``
    (and the trained ``net`` with ``keep_model``). Plots the curves unless ``plot=False``."""
    from chainer_nets.train import TrainConfig, train

    if chainer.get_device(device).xp is np:
        setup_cpu_fast()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(out) if out else Path(tmp) / model
        t0 = time.time()
        result = train(
            TrainConfig(
                model=model,
                device=device,
                epochs=epochs,
                train_subset=train_subset,
                test_subset=test_subset,
                batch_size=batch_size,
                lr=lr,
                seed=seed,
                out=str(run_dir),
                progress=False,
                print_report=False,
            )
        )
        result["log"] = json.loads((run_dir / LOG_FILE).read_text())
        result["batch_size"] = json.loads((run_dir / CONFIG_FILE).read_text())["batch_size"]
        result["notebook_seconds"] = round(time.time() - t0, 1)
        if keep_model:
            net = get_model_info(model).build()
            chainer.serializers.load_npz(str(run_dir / MODEL_FILE), net)
            result["net"] = net
    if plot:
        plot_log(
            result["log"],
            f"{model}: {train_subset} training images, {epochs} epochs, batch "
            f"{result['batch_size']} (quick)",
        )
    print(
        f"{model}: test accuracy {result['test_accuracy']:.2f}% on {result['test_images']} "
        f"test images after {result['epochs']} epochs; {result['notebook_seconds']} s"
    )
    return result


def plot_log(log: list[dict], title: str = ""):
    """Loss and accuracy per epoch from a LogReport log (train and test), side by side."""
    return cresults.plot_log(log, title)


def plot_runs(runs: dict[str, dict], title: str = ""):
    """Several quick runs on one figure: training loss and test accuracy per epoch, one line each."""
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=80)
    for label, res in runs.items():
        log = res["log"]
        ep = [e["epoch"] for e in log]
        ax_loss.plot(ep, [e["main/loss"] for e in log], marker="o", label=label)
        acc = [100 * e["test/main/accuracy"] for e in log if "test/main/accuracy" in e]
        if acc:
            ax_acc.plot(ep[: len(acc)], acc, marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="training loss (cross-entropy)")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)")
    ax_acc.axhline(10, color="grey", lw=0.8, ls=":", label="chance (10%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.show()
    return fig


def accuracy_se(accuracy: float, n: int) -> float:
    """Standard error (in points) of an accuracy (in %) measured on ``n`` independent images."""
    p = min(max(accuracy / 100, 0.0), 1.0)
    return 100 * math.sqrt(max(p * (1 - p), 1.0 / n) / n)


def noise_level(accuracy: float, n: int) -> float:
    """Print the standard error of ``accuracy`` (%) on ``n`` test images, in one sentence; return it.

    The gap between two runs measured on different or the same images is noise-dominated
    until it exceeds about twice the standard error of a difference, 2·√2·se.
    """
    se = accuracy_se(accuracy, n)
    print(
        f"Noise level: on {n} test images an accuracy near {accuracy:.1f}% has a standard "
        f"error of about {se:.1f} points; a gap between two such accuracies below about "
        f"{2 * math.sqrt(2) * se:.1f} points may be noise alone."
    )
    return se


# ---------------------------------------------------------------------------------------------
# Full run and the reproduction section


def full_train(model: str, device: str) -> dict:
    """Run the paper's full recipe for ``model`` into ``results/<model>`` (resumes if started)."""
    from chainer_nets.train import TrainConfig, train

    out = cresults.results_dir() / model
    cmd = cresults.train_command(model, device)
    resume = (out / CONFIG_FILE).is_file() and not (out / RESULT_FILE).is_file()
    return train(
        TrainConfig(
            model=model,
            device=device,
            out=str(out),
            resume=resume,
            command=cmd,
            progress=True,
            print_report=False,
        )
    )


def gpu_hours(model: str, tflops: float = ASSUMED_GPU_TFLOPS) -> float:
    """Estimated GPU hours of ``model``'s full recipe: 3 × forward FLOPs per training image
    (forward and backward) × images seen, at ``tflops`` sustained; evaluation not counted."""
    from chainer_nets.recipes import get_recipe

    recipe = get_recipe(get_model_info(model).recipe)
    per_epoch = CIFAR10_TRAIN_IMAGES / recipe.batch_size
    iterations, _ = recipe.in_iterations(per_epoch)
    images = iterations * recipe.batch_size
    return 3 * forward_flops(model) * images / (tflops * 1e12) / 3600


def reproduction(model: str, device: str = "@cupy:0") -> cresults.Run | None:
    """Paper vs the 2016 Chainer code vs our recorded run (generated table), the GPU time of the
    full recipe (measured if a run is recorded, else estimated), and the curves or the command."""
    run = cresults.find_run(model)
    show_md(cresults.markdown_table([model]))
    flops = forward_flops(model)
    hours = gpu_hours(model)
    if run is not None and run.result.get("wall_seconds"):
        print(
            f"GPU time of the full recipe: {run.result['wall_seconds'] / 3600:.1f} h measured on "
            f"{run.result.get('device', '?')} (read from results/)."
        )
        cresults.plot_log(run.log, f"{model}: full recipe ({run.result.get('device', '?')})")
        return run
    print(
        f"GPU time of the full recipe, estimated: about {hours:.1f} h. That is 3 × "
        f"{flops / 1e6:,.0f} MFLOP per image (forward and backward through the convolution and "
        f"linear layers) × every image the recipe shows, at an assumed {ASSUMED_GPU_TFLOPS:g} "
        "TFLOP/s sustained; small layers rarely reach that on Chainer's path, so read it as a "
        "lower bound. A recorded run replaces it with the measured wall time."
    )
    show_md(
        f"**Not yet reproduced.** No full run of `{model}` is recorded under `results/`. "
        f'On a GPU, this command (or this notebook with `MODE = "full"`) makes one:\n\n'
        f"```\n{cresults.train_command(model, device)}\n```"
    )
    return None


if __name__ == "__main__":  # the render command moved to notebook_render; keep the old spelling
    from chainer_nets.notebook_render import main

    raise SystemExit(main())
