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
3. **Test mode** (``chainer.config.train = False``) for every model whose test-mode forward is
   deterministic (dropout, stochastic depth and drop-path turn into their expectations).
   Swapout's default inference is *stochastic* (the mean of sampled passes, drawing masks
   from the device's random stream): such a model is compared under the configuration that
   makes its inference deterministic (:data:`DETERMINISTIC_TEST_CONFIG`, e.g.
   ``swapout_inference = "deterministic"``), which is checked to be deterministic first.
   **Train mode** (batch statistics) only for models whose train-mode forward is
   deterministic. Determinism is detected by two NumPy forward + backward passes under
   different ``numpy.random`` seeds (logits and every gradient equal): CuPy and NumPy cannot
   be made to draw the same masks. The
   reference always draws from a different random stream than the device side (NumPy seeded
   with ``seed + 1``, the device with ``seed``), as it does on a GPU, so a comparison that
   depends on the random stream fails here too, also in the CPU dry run.
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

``--representative`` checks one model per block type (:data:`REPRESENTATIVE`, plus the first
registered model of every model class it does not cover), each row written to ``--out`` as
soon as it finishes. A model spec ``name:key=value,...`` builds the registered model with its
keyword arguments overridden (a shallower instance of the same blocks).

``--cudnn-models`` then checks the given models again, float32 only, with the device side's
convolutions on :mod:`chainer_nets.cudnn_path` (rows ``name [cudnn]``; a row fails if no
convolution took that path). Run it with ``NVIDIA_TF32_OVERRIDE=0``: cuDNN otherwise runs
float32 convolutions in TF32.

``--device @numpy`` runs the same logic with NumPy on both sides (the device copy takes
chainer_nets.cpu_fast's kernels; ``--plain-reference`` gives the reference Chainer's own
kernels, which makes the CPU run a real comparison of two implementations).

    python benchmarks/gpu/check_correctness.py --out $OUT          # every model, @cupy:0
    python benchmarks/gpu/check_correctness.py --representative --batch 2 --out $OUT
    python benchmarks/gpu/check_correctness.py --device @numpy --plain-reference --models resnet20
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
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
from chainer_nets import cpu_fast, cudnn_path  # noqa: E402
from chainer_nets.registry import count_params  # noqa: E402

TOL32 = 1e-4  # float32 logits, normalised max error
GRAD_L2_TOL32 = 5e-2  # float32 gradients, relative l2 (sanity bound, see the docstring)
NOISE_FACTOR = 10.0  # ... or 10x NumPy's float32-vs-float64 gradient noise, if larger
TOL64 = 1e-9  # float64 logits and every gradient array, normalised max error
#: Seed offset of the NumPy reference's random stream (the device side uses the seed itself).
REFERENCE_SEED_OFFSET = 1
#: Configuration under which a model with stochastic inference infers deterministically.
DETERMINISTIC_TEST_CONFIG = {"swapout_inference": "deterministic"}
#: One model per block type, cheapest first (spec ``name`` or ``name:key=value,...``).
REPRESENTATIVE = (
    "resnet20",  # post-activation basic block, option-A shortcut
    "wresnet_d1192:n=3",  # weighted residual block (the 1192-layer net's blocks, n=3)
    "highway_fitnet19",  # highway layers
    "sd_resnet110",  # stochastic depth
    "preresnet164",  # pre-activation bottleneck, projection shortcuts
    # swapout; its stochastic inference is only run to detect it: 2 sampled passes, not 30
    "swapout_v2_20_w4:samples=2",
    "wrn16_8",  # wide basic block
    "rir_wide18",  # dual-stream ResNet-in-ResNet
    "ror3_wrn58_4_sd",  # residual networks of residual networks
    "fractalnet20",  # fractal blocks, mean joins, drop-path
)


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
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Forward + backward of the mean softmax cross-entropy; logits and all gradients (host).

    ``seed`` seeds NumPy's global generator and, on a GPU, CuPy's; ``config`` holds extra
    ``chainer.config`` entries for the pass."""
    dtype = x.dtype
    xv = chainer.Variable(device.send(x))
    tv = device.send(t)
    np.random.seed(seed)
    if device.xp is not np:
        device.xp.random.seed(seed)
    model.cleargrads()
    with (
        cpu_fast.enabled(fast),
        chainer.using_config("train", train),
        chainer.using_config("dtype", dtype),
        using_configs(config or {}),
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


@contextlib.contextmanager
def using_configs(config: dict[str, Any]) -> Iterator[None]:
    """``chainer.using_config`` for every entry of ``config``."""
    with contextlib.ExitStack() as stack:
        for key, value in config.items():
            stack.enter_context(chainer.using_config(key, value))
        yield


def is_deterministic(
    model: chainer.Chain,
    x: np.ndarray,
    t: np.ndarray,
    train: bool,
    config: dict[str, Any] | None = None,
) -> bool:
    """Whether two forward + backward passes (train or test mode) under different
    numpy.random seeds give exactly the same logits and gradients, for the same arrays.

    Comparing gradients too matters: a residual branch scaled by a weight that starts at 0
    leaves the logits unchanged whether or not it was dropped, but not the set of
    parameters that get a gradient."""
    cpu = chainer.get_device("@numpy")
    outs = [run(copy.deepcopy(model), cpu, x, t, train, seed, True, config) for seed in (1, 2)]
    if set(outs[0]) != set(outs[1]):
        return False
    return all(np.array_equal(outs[0][k], outs[1][k]) for k in outs[0])


def build_model(spec: str) -> chainer.Chain:
    """The model named by ``spec``: ``name`` or ``name:key=value,...`` (overridden kwargs)."""
    name, _, over = spec.partition(":")
    kwargs = {}
    for item in filter(None, over.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"model spec {spec!r}: expected key=value, got {item!r}")
        kwargs[key.strip()] = ast.literal_eval(value.strip())
    return chainer_nets.get_model(name, **kwargs)


def representative_models() -> list[str]:
    """:data:`REPRESENTATIVE`, plus the first registered model of every other model class."""
    infos = chainer_nets.list_models()
    names = {i.name for i in infos}
    specs = [s for s in REPRESENTATIVE if s.partition(":")[0] in names]
    covered = {chainer_nets.get_model_info(s.partition(":")[0]).factory for s in specs}
    for info in infos:
        if info.factory not in covered:
            specs.append(info.name)
            covered.add(info.factory)
    return specs


def check_model(
    name: str, device: chainer.backend.Device, args: argparse.Namespace, cudnn: bool = False
) -> Result:
    """Compare ``name`` on ``device`` with NumPy; see the module docstring for the criteria.

    ``cudnn``: the device side takes chainer_nets.cudnn_path's convolutions (float32 only:
    float64 falls back to Chainer's kernels, which the plain check covers)."""
    t0 = time.perf_counter()
    calls0 = cudnn_path.calls()
    np.random.seed(args.seed)
    if device.xp is not np:
        device.xp.random.seed(args.seed)
    model = build_model(name)
    res = Result(name, count_params(model))
    rng = np.random.RandomState(args.seed)
    x = rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32)
    t = rng.randint(0, 10, args.batch).astype(np.int32)
    xcal = rng.standard_normal((max(args.batch, 8), 3, 32, 32)).astype(np.float32)
    calibrate_bn(model, xcal, args.seed)
    res.train_deterministic = is_deterministic(model, x, t, train=True)
    if not res.train_deterministic:
        res.notes.append("stochastic in train mode: test mode only")
    test_config: dict[str, Any] = {}
    test_ok = True
    if not is_deterministic(model, x, t, train=False):
        if is_deterministic(model, x, t, train=False, config=DETERMINISTIC_TEST_CONFIG):
            test_config = dict(DETERMINISTIC_TEST_CONFIG)
            res.notes.append(
                "stochastic inference by default: test mode compared with "
                + ", ".join(f"{k}={v}" for k, v in test_config.items())
            )
        else:
            test_ok = False
            res.notes.append("stochastic in test mode, no deterministic configuration")
    modes = ([False] if test_ok else []) + (
        [True] if res.train_deterministic and not args.no_train else []
    )
    cpu = chainer.get_device("@numpy")
    fast_ref = not args.plain_reference
    ref_seed = args.seed + REFERENCE_SEED_OFFSET
    refs: dict[tuple[str, bool], dict[str, Any]] = {}
    for dtype in args.dtypes:
        base = model if dtype == "float32" else to_float64(model)
        xd = x.astype(dtype)
        for train in modes:
            config = {} if train else test_config
            # Fresh copies per mode: train mode updates the BN running statistics.
            ref_model, dev_model = copy.deepcopy(base), copy.deepcopy(base)
            dev_model.to_device(device)
            ref = run(ref_model, cpu, xd, t, train, ref_seed, fast_ref, config)
            with cudnn_path.enabled(cudnn):
                dev = run(dev_model, device, xd, t, train, args.seed, True, config)
            res.errors[f"{dtype} {'train' if train else 'test'}"] = compare(dev, ref)
            refs[dtype, train] = ref
            del ref_model, dev_model, dev
    if not modes:
        res.notes.append("nothing deterministic to compare")
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
    if cudnn:
        n = cudnn_path.calls() - calls0
        res.notes.append(f"{n} convolutions on the cuDNN path")
        if n == 0:
            res.notes.append("the cuDNN path was not taken")
            ok = False
    res.ok = bool(ok and modes)
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


def report(results: list[Result], env: dict[str, str], args: argparse.Namespace) -> str:
    """The Markdown report of the models checked so far."""
    n_skip = sum(r.skipped for r in results)
    n_fail = sum(r.status == "FAIL" for r in results)
    header = (
        f"# CuPy vs NumPy correctness ({env['device']})\n\n"
        + "\n".join(f"- {k}: {v}" for k, v in env.items())
        + f"\n- batch {args.batch}, seed {args.seed} (NumPy reference's random stream: seed "
        f"+ {REFERENCE_SEED_OFFSET}); reference: NumPy "
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
    return text


def main(argv: list[str] | None = None) -> int:
    """Check the models; print a table; exit 1 if any model fails.

    With ``--out`` the report (``check_correctness.md`` and ``.json``) is rewritten after
    every model, so a run cut off by a time limit keeps the rows it finished."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="@cupy:0", help="@cupy:0 (default) or @numpy")
    ap.add_argument(
        "--models", nargs="*", help="default: every registered model (none: only --cudnn-models)"
    )
    ap.add_argument(
        "--representative", action="store_true", help="one model per block type (see docstring)"
    )
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
    ap.add_argument(
        "--cudnn-models",
        nargs="*",
        default=[],
        help="then these models again, float32, with chainer_nets.cudnn_path on the device side",
    )
    ap.add_argument("--out", help="folder for check_correctness.{md,json}")
    ap.add_argument("--name", default="check_correctness", help="file stem in --out")
    ap.add_argument(
        "--embed-json", action="store_true", help="JSON at the end of the .md, no .json file"
    )
    args = ap.parse_args(argv)

    if os.environ.get("CUPY_TF32", "0") not in ("", "0"):
        print("warning: CUPY_TF32 is set; TF32 GEMMs exceed the float32 tolerance", flush=True)
    device = chainer.get_device(args.device)
    device.use()
    if args.models is not None:
        names = args.models
    elif args.representative:
        names = representative_models()
    else:
        names = [i.name for i in chainer_nets.list_models()]
    env = environment(device)
    print(" ".join(f"{k}={v}" for k, v in env.items()), flush=True)
    results: list[Result] = []

    def write() -> None:
        if not args.out:
            return
        os.makedirs(args.out, exist_ok=True)
        data = {"env": env, "results": [asdict(r) for r in results]}
        with open(os.path.join(args.out, f"{args.name}.md"), "w") as f:
            f.write(report(results, env, args))
            if args.embed_json:
                f.write("\n```json\n" + json.dumps(data, indent=1) + "\n```\n")
        if not args.embed_json:
            with open(os.path.join(args.out, f"{args.name}.json"), "w") as f:
                json.dump(data, f, indent=1)

    t_start = time.monotonic()
    registered = {i.name for i in chainer_nets.list_models()}
    jobs = [(name, False) for name in names] + [(name, True) for name in args.cudnn_models]
    if args.cudnn_models:
        cudnn_path.install(default=False)  # switched on per comparison, device side only
    for name, cudnn in jobs:
        label = f"{name} [cudnn]" if cudnn else name
        skip = None
        if args.budget_s is not None and time.monotonic() - t_start > args.budget_s:
            skip = f"not run: --budget-s {args.budget_s:g}"
        elif cudnn and name.partition(":")[0] not in registered:
            skip = "not registered"
        elif cudnn and device.xp is np:
            skip = "the cuDNN path needs CuPy"
        elif cudnn and not cudnn_path.available():
            skip = f"cuDNN frontend not importable: {cudnn_path.import_error()}"
        if skip:
            r = Result(label, 0, skipped=True, notes=[skip])
            results.append(r)
            print(f"{label:18s} SKIP  {r.notes[0]}", flush=True)
            write()
            continue
        try:
            if cudnn:
                r = check_model(
                    name,
                    device,
                    argparse.Namespace(**{**vars(args), "dtypes": ["float32"]}),
                    cudnn=True,
                )
                r.model = label
            else:
                r = check_model(name, device, args)
        except Exception as e:  # report and go on with the other models
            r = Result(label, 0, notes=[f"{type(e).__name__}: {e}"])
        results.append(r)
        write()
        errs = "  ".join(
            f"{k}: logits {fmt(e['logits'])} grads {fmt(e['grads'])} l2 {fmt(e['grads_l2'])}"
            for k, e in r.errors.items()
        )
        print(
            f"{label:18s} {r.status} {r.seconds:5.1f}s  {errs}  {'; '.join(r.notes)}",
            flush=True,
        )
    print("\n" + report(results, env, args), flush=True)
    return 1 if any(r.status == "FAIL" for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
