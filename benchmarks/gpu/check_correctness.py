"""Every registered chainer_nets model, forward and backward on a device against NumPy.

For each model in the registry (or ``--models``), in one process:

1. Build it on NumPy (seeded) and **calibrate** its batch normalizations: one train-mode
   forward pass (no backprop) with each BN's running-average decay set to 0, so the running
   statistics are those of real activations. Test mode then normalises properly (with the
   initial mean 0 / variance 1 a 1202-layer post-activation ResNet's test-mode activations
   grow without bound), and both copies share the same statistics.
2. Deep-copy it: one copy stays on NumPy (the reference), one goes to ``--device`` (default
   ``@cupy:0``): identical weights, identical running statistics, identical input batch and
   labels. Loss: mean softmax cross-entropy; compared: the logits, the gradient with respect
   to the input and every parameter's gradient.
3. **Test mode** (``chainer.config.train = False``) for every model: it is deterministic
   (dropout, stochastic depth, drop-path and swapout turn into their expectations).
   **Train mode** (batch statistics) only for models whose train-mode forward is
   deterministic, detected by two NumPy forwards under different ``numpy.random`` seeds: CuPy
   and NumPy cannot be made to draw the same dropout/drop-path masks.
4. Each comparison runs twice: in **float32** (what training uses) and in **float64** (the
   same model and input cast up, on both sides).

Tolerances (``err = max|dev - ref| / max|ref|`` per array; ``l2 = ||dev - ref|| / ||ref||``
over the input and all parameter gradients together):

* float32 logits: ``err <= 1e-4``. The forward pass is a continuous function of every
  rounding error; two float32 implementations that sum in different orders (NumPy/OpenBLAS
  and chainer_nets.cpu_fast, or im2col + cuBLAS) differ by 2e-7 to 2e-6 here, and a real
  kernel error (wrong index, missing term) shows as 1e-2 or more.
* float32 gradients: ``l2 <= max(5e-2, 10 x noise)``, a sanity bound only, where ``noise``
  is the same ``l2`` between NumPy's own float32 and float64 gradients (shown in
  parentheses). Gradients are *not* continuous in the rounding errors: a pre-activation
  within rounding of 0 flips a ReLU's derivative, a near-tie flips a max-pool's argmax, and
  deep BN networks at initialisation amplify the rest. Measured on CPU between two correct
  float32 implementations (Chainer's own NumPy kernels and cpu_fast), and between either
  and float64: per-array ``err`` up to 1.5e-1 and ``l2`` up to 1e-2 (FractalNet, ResNet-110),
  growing with depth, so no fixed tight float32 gradient tolerance can tell a bug from
  rounding.
* float64 logits and gradients: ``err <= 1e-9`` for every array. In float64 the same
  amplification leaves 1e-15 to 1e-13 (measured between the two CPU implementations), so
  this is the exact check of every device kernel, forward and backward.

Run with CUPY_TF32 unset: TF32 rounds GEMM inputs to 10-bit mantissas (about 1e-3).

``--device @numpy`` runs the same logic with NumPy on both sides (the device copy takes
chainer_nets.cpu_fast's kernels; ``--plain-reference`` gives the reference Chainer's own
kernels, which makes the CPU run a real comparison of two implementations).

    python benchmarks/gpu/check_correctness.py --out $OUT          # every model, @cupy:0
    python benchmarks/gpu/check_correctness.py --device @numpy --plain-reference --models resnet20
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

import chainer_nets  # noqa: E402, I001  (installs the NumPy-2 compat layer before chainer)
import numpy as np  # noqa: E402

import chainer  # noqa: E402
import chainer.functions as F  # noqa: E402
import chainer.links as L  # noqa: E402
from chainer_nets import cpu_fast  # noqa: E402
from chainer_nets.registry import count_params  # noqa: E402

TOL32 = 1e-4  # float32 logits, normalised max error
GRAD_L2_TOL32 = 5e-2  # float32 gradients, relative l2 (sanity bound, see the docstring)
NOISE_FACTOR = 10.0  # ... or 10x NumPy's float32-vs-float64 gradient noise, if larger
TOL64 = 1e-9  # float64 logits and every gradient array, normalised max error


@dataclass
class Result:
    """Comparison of one model: errors per (dtype, mode), NaN where not run."""

    model: str
    params: int
    train_deterministic: bool = False
    #: "float32 test" -> {"logits": err, "grads": err, "grads_l2": l2, "worst": name}
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    ok: bool = False
    skipped: bool = False
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        """PASS, FAIL or SKIP (not run: time budget)."""
        return "SKIP" if self.skipped else ("PASS" if self.ok else "FAIL")


def norm_err(a: Any, b: Any) -> float:
    """Normalised max error ``max|a - b| / max|b|`` (0 when both are all zero)."""
    a = np.asarray(chainer.backend.CpuDevice().send(a), dtype=np.float64)
    b = np.asarray(chainer.backend.CpuDevice().send(b), dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shape {a.shape} vs {b.shape}")
    scale = float(np.abs(b).max()) if b.size else 0.0
    diff = float(np.abs(a - b).max()) if b.size else 0.0
    if scale == 0.0:
        return diff
    return diff / scale


def calibrate_bn(model: chainer.Chain, x: np.ndarray, seed: int) -> None:
    """Set every BN's running statistics to those of one train-mode forward pass on ``x``."""
    bns = [link for link in model.links() if isinstance(link, L.BatchNormalization)]
    saved = [b.decay for b in bns]
    for b in bns:
        b.decay = 0.0
    np.random.seed(seed)
    try:
        with chainer.using_config("train", True), chainer.no_backprop_mode():
            model(x)
    finally:
        for b, d in zip(bns, saved, strict=True):
            b.decay = d


def to_float64(model: chainer.Chain) -> chainer.Chain:
    """A float64 copy of a NumPy model (parameters and float32 persistent arrays)."""
    m64 = copy.deepcopy(model)
    for link in m64.links():
        for p in link.params(include_uninit=False):
            p.array = p.array.astype(np.float64)
        for name in link._persistent:
            v = getattr(link, name)
            if isinstance(v, np.ndarray) and v.dtype == np.float32:
                setattr(link, name, v.astype(np.float64))
    return m64


def run(
    model: chainer.Chain,
    device: chainer.backend.Device,
    x: np.ndarray,
    t: np.ndarray,
    train: bool,
    seed: int,
    fast: bool = True,
) -> dict[str, Any]:
    """Forward + backward of the mean softmax cross-entropy; logits and all gradients (host)."""
    dtype = x.dtype
    xv = chainer.Variable(device.send(x))
    tv = device.send(t)
    np.random.seed(seed)
    model.cleargrads()
    with (
        cpu_fast.enabled(fast),
        chainer.using_config("train", train),
        chainer.using_config("dtype", dtype),
    ):
        y = model(xv)
        loss = F.softmax_cross_entropy(y, tv)
        loss.backward()
    cpu = chainer.backend.CpuDevice()
    out = {"logits": cpu.send(y.array), "x": cpu.send(xv.grad)}
    for name, p in model.namedparams():
        if p.grad is not None:
            out[name] = cpu.send(p.grad)
    return out


def compare(dev: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    """Logits error, worst per-array gradient error (and which array), gradients' l2 error."""
    if set(dev) != set(ref):
        missing = sorted(set(dev) ^ set(ref))
        raise AssertionError(f"different arrays got gradients: {missing[:5]}")
    worst, worst_name, num, den = 0.0, "", 0.0, 0.0
    for key in ref:
        if key == "logits":
            continue
        e = norm_err(dev[key], ref[key])
        if not e <= worst:  # also catches NaN
            worst, worst_name = e, key
        a = np.asarray(dev[key], dtype=np.float64)
        b = np.asarray(ref[key], dtype=np.float64)
        num += float(((a - b) ** 2).sum())
        den += float((b**2).sum())
    l2 = (num / den) ** 0.5 if den > 0 else num**0.5
    return {
        "logits": norm_err(dev["logits"], ref["logits"]),
        "grads": worst,
        "grads_l2": l2,
        "worst": worst_name,
    }


def train_is_deterministic(model: chainer.Chain, x: np.ndarray) -> bool:
    """Whether two train-mode forwards with different numpy.random seeds agree exactly."""
    outs = []
    for seed in (1, 2):
        m = copy.deepcopy(model)
        np.random.seed(seed)
        with chainer.using_config("train", True), chainer.no_backprop_mode():
            outs.append(m(x).array)
    return bool(np.array_equal(outs[0], outs[1]))


def check_model(name: str, device: chainer.backend.Device, args: argparse.Namespace) -> Result:
    """Compare ``name`` on ``device`` with NumPy; see the module docstring for the criteria."""
    t0 = time.perf_counter()
    np.random.seed(args.seed)
    if device.xp is not np:
        device.xp.random.seed(args.seed)
    model = chainer_nets.get_model(name)
    res = Result(name, count_params(model))
    rng = np.random.RandomState(args.seed)
    x = rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32)
    t = rng.randint(0, 10, args.batch).astype(np.int32)
    xcal = rng.standard_normal((max(args.batch, 8), 3, 32, 32)).astype(np.float32)
    calibrate_bn(model, xcal, args.seed)
    res.train_deterministic = train_is_deterministic(model, x)
    if not res.train_deterministic:
        res.notes.append("stochastic in train mode: test mode only")
    modes = [False] + ([True] if res.train_deterministic and not args.no_train else [])
    cpu = chainer.get_device("@numpy")
    fast_ref = not args.plain_reference
    refs: dict[tuple[str, bool], dict[str, Any]] = {}
    for dtype in args.dtypes:
        base = model if dtype == "float32" else to_float64(model)
        xd = x.astype(dtype)
        for train in modes:
            # Fresh copies per mode: train mode updates the BN running statistics.
            ref_model, dev_model = copy.deepcopy(base), copy.deepcopy(base)
            dev_model.to_device(device)
            ref = run(ref_model, cpu, xd, t, train, args.seed, fast_ref)
            dev = run(dev_model, device, xd, t, train, args.seed)
            res.errors[f"{dtype} {'train' if train else 'test'}"] = compare(dev, ref)
            refs[dtype, train] = ref
            del ref_model, dev_model, dev
    ok = True
    for key, err in res.errors.items():
        dtype, mode = key.split()
        if dtype == "float32":
            # NumPy's own float32 rounding noise against float64, when both ran.
            r64 = refs.get(("float64", mode == "train"))
            if r64 is not None:
                err["noise_l2"] = compare(refs["float32", mode == "train"], r64)["grads_l2"]
            bound = max(args.grad_l2_tol, args.noise_factor * err.get("noise_l2", 0.0))
            good = err["logits"] <= args.tol and err["grads_l2"] <= bound
        else:
            good = err["logits"] <= args.tol64 and err["grads"] <= args.tol64
        if not good:
            res.notes.append(f"{key} out of tolerance")
        ok &= good
    res.ok = bool(ok)
    res.seconds = time.perf_counter() - t0
    return res


def environment(device: chainer.backend.Device) -> dict[str, str]:
    """Versions and device name for the report."""
    env = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "chainer": chainer.__version__,
        "device": str(device),
        "CUPY_TF32": os.environ.get("CUPY_TF32", "(unset)"),
    }
    if device.xp is not np:
        import cupy

        env["cupy"] = cupy.__version__
        props = cupy.cuda.runtime.getDeviceProperties(device.device.id)
        env["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        env["cudnn_in_chainer"] = str(chainer.backends.cuda.cudnn_enabled)
    return env


def fmt(v: float) -> str:
    """Short scientific notation, '-' for NaN."""
    return "-" if v != v else f"{v:.1e}"


def table(results: list[Result], dtypes: list[str]) -> str:
    """Markdown table of the results."""
    keys = [f"{d} {m}" for d in dtypes for m in ("test", "train")]
    head = "| model | params | train det. |"
    rule = "|---|---:|:-:|"
    for k in keys:
        grad = "grads l2 (numpy noise)" if k.startswith("float32") else "grads max"
        head += f" {k} logits | {k} {grad} |"
        rule += "---:|---:|"
    lines = [head + " ok | s |", rule + ":-:|---:|"]
    for r in results:
        row = f"| {r.model} | {r.params:,} | {'yes' if r.train_deterministic else 'no'} |"
        for k in keys:
            e = r.errors.get(k)
            if e is None:
                row += " - | - |"
            else:
                if k.startswith("float32"):
                    g = f"{fmt(e['grads_l2'])} ({fmt(e.get('noise_l2', float('nan')))})"
                else:
                    g = fmt(e["grads"])
                row += f" {fmt(e['logits'])} | {g} |"
        lines.append(row + f" {r.status} | {r.seconds:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Check the models; print a table; exit 1 if any model fails."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="@cupy:0", help="@cupy:0 (default) or @numpy")
    ap.add_argument("--models", nargs="+", help="default: every registered model")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=TOL32, help="float32 logits tolerance")
    ap.add_argument("--grad-l2-tol", type=float, default=GRAD_L2_TOL32)
    ap.add_argument("--tol64", type=float, default=TOL64, help="float64 tolerance")
    ap.add_argument("--noise-factor", type=float, default=NOISE_FACTOR)
    ap.add_argument("--budget-s", type=float, help="do not start another model after this")
    ap.add_argument(
        "--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"]
    )
    ap.add_argument("--no-train", action="store_true", help="skip the train-mode comparison")
    ap.add_argument(
        "--plain-reference",
        action="store_true",
        help="NumPy reference with Chainer's own kernels (chainer_nets.cpu_fast off)",
    )
    ap.add_argument("--out", help="folder for check_correctness.{md,json}")
    args = ap.parse_args(argv)

    if os.environ.get("CUPY_TF32", "0") not in ("", "0"):
        print("warning: CUPY_TF32 is set; TF32 GEMMs exceed the float32 tolerance", flush=True)
    device = chainer.get_device(args.device)
    device.use()
    names = args.models or [i.name for i in chainer_nets.list_models()]
    env = environment(device)
    print(" ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    results = []
    t_start = time.monotonic()
    for name in names:
        if args.budget_s is not None and time.monotonic() - t_start > args.budget_s:
            r = Result(name, 0, skipped=True, notes=[f"not run: --budget-s {args.budget_s:g}"])
            results.append(r)
            print(f"{name:18s} SKIP  {r.notes[0]}", flush=True)
            continue
        try:
            r = check_model(name, device, args)
        except Exception as e:  # report and go on with the other models
            r = Result(name, 0, notes=[f"{type(e).__name__}: {e}"])
        results.append(r)
        errs = "  ".join(
            f"{k}: logits {fmt(e['logits'])} grads {fmt(e['grads'])} l2 {fmt(e['grads_l2'])}"
            for k, e in r.errors.items()
        )
        print(
            f"{name:18s} {r.status} {r.seconds:5.1f}s  {errs}  {'; '.join(r.notes)}",
            flush=True,
        )
    n_skip = sum(r.skipped for r in results)
    n_fail = sum(r.status == "FAIL" for r in results)
    header = (
        f"# CuPy vs NumPy correctness ({env['device']})\n\n"
        + "\n".join(f"- {k}: {v}" for k, v in env.items())
        + f"\n- batch {args.batch}, seed {args.seed}; reference: NumPy "
        f"({'Chainer kernels' if args.plain_reference else 'chainer_nets.cpu_fast'})\n"
        f"- pass: float32 logits max|d-r|/max|r| <= {args.tol:g}, float32 gradients "
        f"||d-r||/||r|| <= max({args.grad_l2_tol:g}, {args.noise_factor:g} x NumPy's own "
        f"float32-vs-float64 gradient l2) (sanity bound), float64 logits and every "
        f"gradient array max|d-r|/max|r| <= {args.tol64:g} (see the script's docstring)\n"
        f"- command: `python {' '.join(sys.argv)}`\n"
    )
    text = header + "\n" + table(results, args.dtypes) + "\n"
    notes = [f"- {r.model}: {'; '.join(r.notes)}" for r in results if r.notes]
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    text += f"\n{len(results) - n_fail - n_skip}/{len(results)} models pass"
    text += f", {n_skip} not run.\n" if n_skip else ".\n"
    print("\n" + text, flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "check_correctness.md"), "w") as f:
            f.write(text)
        with open(os.path.join(args.out, "check_correctness.json"), "w") as f:
            json.dump({"env": env, "results": [asdict(r) for r in results]}, f, indent=1)
    return 1 if n_fail else 0


if __name__ == "__main__":
    raise SystemExit(main())
