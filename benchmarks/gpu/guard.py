"""Guard: one training step per model with device-to-host reads forbidden.

A training step that reads a device value on the host (``float(x)``, ``bool(x)``,
``x.get()``, ``int(xp.random.rand())`` ...) makes the host wait for the GPU, so the next
kernels cannot be queued while the current ones run. For each model (default: the check's
one-per-block-type set) this builds the model and the optimizer as the training command does
(MomentumSGD or NesterovAG with the recipe's momentum, weight decay, the model's own
``configure_optimizer``; ``--dtype mixed16`` adds the fp32 master update), runs one warm-up step
(kernels compile, the memory pool fills), then one more step, forward + softmax cross-entropy
+ backward + update, inside ``cupyx.allow_synchronize(False)``: CuPy raises
``DeviceSynchronized`` at the first device-to-host copy or device synchronisation. The
report names, for each model, either "no host read" or the first line of chainer_nets code
(else the innermost frame) that read from the device.

On NumPy (``--device @numpy``) the same steps run without the guard (there is nothing to
synchronise), so the CPU dry run exercises everything but CuPy's detector.

    python benchmarks/gpu/guard.py --out $OUT                   # @cupy:0, representative set
    python benchmarks/gpu/guard.py --device @numpy --models resnet20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import chainer_nets  # noqa: E402, I001  (installs the NumPy-2 compat layer before chainer)
import numpy as np  # noqa: E402

import chainer  # noqa: E402
import chainer.links as L  # noqa: E402
from check_correctness import build_model, representative_models  # noqa: E402
from chainer_nets.recipes import get_recipe  # noqa: E402


@contextlib.contextmanager
def no_host_reads(xp: Any) -> Iterator[bool]:
    """Forbid device-to-host reads inside the block (CuPy); yields whether it is guarded."""
    if xp is np:
        yield False
        return
    import cupyx

    with warnings.catch_warnings():
        # CuPy deprecates the detector ("not possible to reliably detect"): it still catches
        # every copy to the host and every explicit synchronisation, which is what we need.
        warnings.filterwarnings("ignore", message=".*allow_synchronize.*")
        with cupyx.allow_synchronize(False):
            yield True


def where(exc: BaseException) -> str:
    """The first chainer_nets frame of ``exc``'s traceback (else the innermost one)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}chainer_nets{os.sep}" in f.filename]
    f = (ours or frames)[-1] if frames else None
    if f is None:
        return "?"
    path = os.path.relpath(f.filename, ROOT) if f.filename.startswith(ROOT) else f.filename
    return f"{path}:{f.lineno} `{(f.line or '').strip()}`"


def guard_model(spec: str, device: chainer.backend.Device, batch: int, dtype: str) -> dict:
    """Build ``spec`` and its optimizer, warm up one step, then one guarded step."""
    t0 = time.perf_counter()
    name = spec.partition(":")[0]
    recipe = get_recipe(chainer_nets.get_model_info(name).recipe)
    mixed = dtype == "mixed16"
    cdtype = chainer.mixed16 if mixed else np.float32
    np.random.seed(0)
    if device.xp is not np:
        device.xp.random.seed(0)
    with chainer.using_config("dtype", cdtype):
        net = build_model(spec)
        model = L.Classifier(net)
        model.to_device(device)
        if recipe.optimizer == "nesterov":
            opt = chainer.optimizers.NesterovAG(lr=recipe.lr, momentum=recipe.momentum)
        else:
            opt = chainer.optimizers.MomentumSGD(lr=recipe.lr, momentum=recipe.momentum)
        opt.setup(model)
        opt.add_hook(chainer.optimizer_hooks.WeightDecay(recipe.weight_decay))
        if mixed:
            opt.use_fp32_update()
        if hasattr(net, "configure_optimizer"):
            net.configure_optimizer(opt, recipe)
    rng = np.random.RandomState(0)
    x = device.send(rng.standard_normal((batch, 3, 32, 32)).astype(np.float16 if mixed else "f"))
    t = device.send(rng.randint(0, 10, batch).astype(np.int32))
    loss_scale = 1024.0 if mixed else None

    def step() -> None:
        with chainer.using_config("dtype", cdtype), chainer.using_config("train", True):
            loss = model(x, t)
            model.cleargrads()
            loss.backward(loss_scale=loss_scale)
            opt.update()

    step()  # warm-up: kernel compilation, memory pool
    if device.xp is not np:
        device.device.synchronize()
    row: dict[str, Any] = {"model": spec, "dtype": dtype}
    try:
        with no_host_reads(device.xp) as guarded:
            step()
        row["result"] = "no host read" if guarded else "ran (NumPy: no guard)"
        row["ok"] = True
    except Exception as e:  # DeviceSynchronized, or a real error: both are reported
        row["ok"] = False
        row["result"] = f"{type(e).__name__} at {where(e)}"
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def render(rows: list[dict], device: str) -> str:
    """Markdown table of the guard results."""
    lines = [
        f"# Host reads in one training step ({device})",
        "",
        "| model | dtype | result | s |",
        "|---|---|---|---:|",
    ]
    lines += [f"| {r['model']} | {r['dtype']} | {r['result']} | {r['seconds']} |" for r in rows]
    ok = sum(r["ok"] for r in rows)
    return "\n".join(lines) + f"\n\n{ok}/{len(rows)} models pass.\n"


def main(argv: list[str] | None = None) -> int:
    """Run the guard; exit 1 if any step read from the device or failed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="@cupy:0")
    ap.add_argument("--models", nargs="+", help="default: the check's representative set")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--dtype", choices=["float32", "mixed16"], default="float32")
    ap.add_argument("--budget-s", type=float, help="start no further model after this")
    ap.add_argument("--out", help="folder for guard.md")
    args = ap.parse_args(argv)
    device = chainer.get_device(args.device)
    device.use()
    specs = args.models or representative_models()
    rows: list[dict] = []
    t_start = time.monotonic()
    for spec in specs:
        if args.budget_s is not None and time.monotonic() - t_start > args.budget_s:
            rows.append(
                {"model": spec, "dtype": args.dtype, "ok": True, "seconds": 0,
                 "result": f"not run: --budget-s {args.budget_s:g}"}
            )  # fmt: skip
        else:
            try:
                rows.append(guard_model(spec, device, args.batch, args.dtype))
            except Exception as e:  # the warm-up step itself failed
                rows.append(
                    {"model": spec, "dtype": args.dtype, "ok": False, "seconds": 0,
                     "result": f"setup failed: {type(e).__name__}: {e} ({where(e)})"}
                )  # fmt: skip
        print(f"guard {rows[-1]['model']:20s} {rows[-1]['result']}", flush=True)
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, "guard.md"), "w") as f:
                f.write(render(rows, str(device)))
                f.write("\n```json\n" + json.dumps(rows, indent=1) + "\n```\n")
    print("\n" + render(rows, str(device)), flush=True)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
