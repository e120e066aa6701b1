"""Training-step throughput on one GPU: chainer_nets on CuPy vs architecture-identical PyTorch.

One process, one card. For each model it times full training steps (forward, mean softmax
cross-entropy, backward, momentum-SGD update with weight decay 5e-4) on one fixed random batch
(default 128 images, the same numbers for both frameworks), after warm-up steps that are not
timed, synchronising the device before and after each timed repeat; images/s comes from the
median repeat. Variants:

* PyTorch (references in torch_models.py, parameter counts asserted equal to
  chainer_nets.registry.count_params, forward FLOPs asserted equal too):
  ``fp32`` (TF32 off in cuBLAS and cuDNN), ``tf32`` (on), ``amp`` (float16 autocast, GradScaler,
  channels_last), each eager and ``torch.compile``-d (default mode; the compile time is the
  first warm-up step and is reported, never timed). cudnn.benchmark is on.
* chainer_nets (im2col + cuBLAS: CuPy 14 has no cuDNN bindings), each variant in its own
  subprocess because CuPy reads ``CUPY_TF32`` once, when it is imported: ``float32``
  (CUPY_TF32=0), ``tf32`` (CUPY_TF32=1), ``mixed16`` (``chainer.mixed16`` config, float16
  input, ``use_fp32_update()``, static loss scale 1024: what ``chainer_nets.train --dtype
  mixed16`` does). Each worker also times a 4096^3 CuPy matmul in its own mode, which shows
  whether TF32 really took effect.

FLOPs are counted analytically from the convolution and linear layers' shapes (2 per
multiply-add; batch norm, activations, pooling and the update are not counted) on both sides;
a training step counts 3x the forward FLOPs. The card's peak is measured in the same run with
an 8192^3 torch matmul in fp32, TF32 and fp16; "% of peak" compares each variant with the peak
of its own math mode (amp and mixed16 with fp16).

FractalNet (``fractalnet20``, the multi-branch/join-heavy case: chainer_nets has no DenseNet)
is timed in both frameworks with all columns and no drop-path (deterministic joins), dropout
on; Chainer's model is put in that mode by setting ``global_ratio = local_drop = 0``.

    python benchmarks/gpu/bench.py --models wrn28_10 --out $OUT          # on the GPU
    python benchmarks/gpu/bench.py --quick                                # CPU smoke run

Each variant's row is appended to ``--out``/bench_<models>.{md,json} as soon as it is
measured, so a run cut off by a time limit keeps what it finished; ``--budget-s`` skips (with a
note) the variants that would start after that many seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

CHAINER_VARIANTS = ("float32", "tf32", "mixed16")
TORCH_VARIANTS = ("amp", "fp32", "tf32")
#: Math mode whose measured peak a variant is compared with.
PEAK_KIND = {
    "fp32": "fp32",
    "float32": "fp32",
    "tf32": "tf32",
    "amp": "fp16",
    "mixed16": "fp16",
    "float32+cudnn": "fp32",
    "mixed16+cudnn": "fp16",
}
#: Chainer variants that take chainer_nets.cudnn_path's convolutions (the frontend must import).
CUDNN_SUFFIX = "+cudnn"
LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4


@dataclass
class Row:
    """One measured (or skipped) variant of one model."""

    model: str
    framework: str  # "pytorch" or "chainer"
    variant: str  # fp32 / tf32 / amp, or float32 / tf32 / mixed16
    compiled: bool = False
    images_s: float | None = None
    step_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """Framework, variant and mode as one column."""
        mode = " compiled" if self.compiled else (" eager" if self.framework == "pytorch" else "")
        return f"{self.framework} {self.variant}{mode}"


def time_steps(
    step: Callable[[], None], sync: Callable[[], None], warmup: int, repeats: int, steps: int
) -> tuple[float, float]:
    """(median seconds per step over ``repeats`` timed runs of ``steps`` steps, seconds taken by
    the first warm-up step). The device is synchronised around every timed run."""
    first = 0.0
    for i in range(max(warmup, 1)):
        t0 = time.perf_counter()
        step()
        sync()
        if i == 0:
            first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times), first


def make_batch(batch: int, seed: int) -> tuple[Any, Any]:
    """The benchmark's input: standard-normal float32 images and int32 labels (NumPy)."""
    import numpy as np

    rng = np.random.RandomState(seed)
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    t = rng.randint(0, 10, batch).astype(np.int32)
    return x, t


# --------------------------------------------------------------------------------------------
# Chainer side: runs in a subprocess per variant (``--worker``); never imports torch.
# --------------------------------------------------------------------------------------------


def chainer_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Time one chainer_nets variant; returns a JSON-able result dict."""
    sys.path.insert(0, ROOT)
    import chainer_nets  # noqa: I001  (installs the NumPy-2 compat layer before chainer)
    import chainer
    import chainer.functions as F
    import chainer.links as L
    import numpy as np
    from chainer_nets.registry import count_params

    variant = args.variant
    device = chainer.get_device(args.chainer_device)
    device.use()
    xp = device.xp
    on_gpu = xp is not np
    use_cudnn = variant.endswith(CUDNN_SUFFIX)
    if use_cudnn:
        from chainer_nets import cudnn_path

        if not on_gpu:
            return {"error": "the cuDNN path needs CuPy"}
        if not cudnn_path.available():
            return {"error": f"cuDNN frontend not importable: {cudnn_path.import_error()}"}
        cudnn_path.install(default=True)
    mixed = variant.removesuffix(CUDNN_SUFFIX) == "mixed16"
    dtype = chainer.mixed16 if mixed else np.float32
    np.random.seed(args.seed)
    if on_gpu:
        xp.random.seed(args.seed)
    with chainer.using_config("dtype", dtype):
        net = chainer_nets.get_model(args.model)
    notes = []
    if hasattr(net, "global_ratio") and hasattr(net, "local_drop"):
        net.global_ratio, net.local_drop = 0.0, 0.0  # FractalNet: all columns, no drop-path
        notes.append("all columns, no drop-path")
    params = count_params(net)
    net.to_device(device)
    opt = chainer.optimizers.MomentumSGD(lr=LR, momentum=MOMENTUM)
    opt.setup(net)
    opt.add_hook(chainer.optimizer_hooks.WeightDecay(WEIGHT_DECAY))
    if mixed:
        opt.use_fp32_update()
    x, t = make_batch(args.batch, args.seed)
    xd = device.send(x.astype(np.float16 if mixed else np.float32))
    td = device.send(t)
    loss_scale = args.loss_scale if mixed else None

    def step() -> None:
        with chainer.using_config("dtype", dtype), chainer.using_config("train", True):
            loss = F.softmax_cross_entropy(net(xd), td)
            net.cleargrads()
            loss.backward(loss_scale=loss_scale)
            opt.update()

    def sync() -> None:
        if on_gpu:
            xp.cuda.get_current_stream().synchronize()

    class FlopCounter(chainer.LinkHook):
        """Forward FLOPs of convolution and linear links, from their output shapes."""

        name = "flop_counter"

        def __init__(self) -> None:
            super().__init__()
            self.flops = 0

        def forward_postprocess(self, cb: Any) -> None:
            link, out = cb.link, cb.out
            if isinstance(link, L.Convolution2D):
                w = link.W.shape
                self.flops += 2 * out.size * w[1] * w[2] * w[3]
            elif isinstance(link, L.Linear):
                self.flops += 2 * out.size * link.W.shape[1]

    counter = FlopCounter()
    with counter:
        step()  # the first warm-up step, with the FLOP counter on
    sync()
    sec, first = time_steps(step, sync, args.warmup - 1, args.repeats, args.steps)
    if use_cudnn:
        notes.append(f"{cudnn_path.calls()} convolutions on cuDNN, first step {first:.1f}s")
    result: dict[str, Any] = {
        "params": int(params),
        "fwd_flops_per_image": counter.flops // args.batch,
        "step_s": sec,
        "first_step_s": first,
        "notes": notes,
        "env": {
            "chainer": chainer.__version__,
            "numpy": np.__version__,
            "CUPY_TF32": os.environ.get("CUPY_TF32", "(unset)"),
        },
    }
    if on_gpu:
        import cupy

        result["env"]["cupy"] = cupy.__version__
        result["env"]["cudnn_in_chainer"] = bool(chainer.backends.cuda.cudnn_enabled)
        n = args.gemm_n
        gdt = np.float16 if mixed else np.float32
        a = cupy.random.standard_normal((n, n), dtype=np.float32).astype(gdt)
        b = cupy.random.standard_normal((n, n), dtype=np.float32).astype(gdt)
        gemm_s, _ = time_steps(lambda: cupy.matmul(a, b), sync, 2, 5, 3)
        result["cupy_gemm_tflops"] = 2 * n**3 / gemm_s / 1e12
    else:
        result["notes"].append("NumPy: chainer_nets.cpu_fast kernels")
    return result


def run_chainer_variant(
    model: str, variant: str, args: argparse.Namespace, timeout: float
) -> dict[str, Any]:
    """Run :func:`chainer_worker` in a fresh interpreter with CUPY_TF32 set for ``variant``."""
    env = os.environ.copy()
    env["CUPY_TF32"] = "1" if variant == "tf32" else "0"
    if variant == "float32" + CUDNN_SUFFIX:
        env["NVIDIA_TF32_OVERRIDE"] = "0"  # cuDNN would use TF32 for float32 by default
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--models",
        model,
        "--variant",
        variant,
        "--chainer-device",
        args.chainer_device,
        "--batch",
        str(args.batch),
        "--warmup",
        str(args.warmup),
        "--repeats",
        str(args.repeats),
        "--steps",
        str(args.steps),
        "--seed",
        str(args.seed),
        "--loss-scale",
        str(args.loss_scale),
        "--gemm-n",
        str(args.gemm_n),
    ]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"worker timed out after {timeout:.0f}s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"worker exit {proc.returncode}: " + " | ".join(tail)}


# --------------------------------------------------------------------------------------------
# PyTorch side (parent process).
# --------------------------------------------------------------------------------------------


def set_torch_math(torch: Any, variant: str) -> None:
    """TF32 on for ``tf32`` (and for the fp32 parts of ``amp``, as usual), off for ``fp32``."""
    allow = variant != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow
    torch.set_float32_matmul_precision("high" if allow else "highest")


def torch_variant(
    torch: Any, name: str, variant: str, compiled: bool, x: Any, t: Any, device: str, a: Any
) -> tuple[float, float, list[str]]:
    """Time one PyTorch variant; returns (seconds per step, first-step seconds, notes)."""
    from torch_models import get_torch_model

    set_torch_math(torch, variant)
    torch.manual_seed(a.seed)
    model = get_torch_model(name).to(device)
    xt = torch.from_numpy(x).to(device)
    tt = torch.from_numpy(t.astype("int64")).to(device)
    notes: list[str] = []
    amp = variant == "amp"
    amp_dtype = torch.float16 if device == "cuda" else torch.bfloat16
    if amp:
        model = model.to(memory_format=torch.channels_last)
        xt = xt.contiguous(memory_format=torch.channels_last)
        if device != "cuda":
            notes.append("CPU: bfloat16 autocast, no scaler")
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    scaler = torch.amp.GradScaler("cuda") if amp and device == "cuda" else None
    fwd = torch.compile(model) if compiled else model
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=amp_dtype, enabled=amp):
            loss = torch.nn.functional.cross_entropy(fwd(xt), tt)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    sec, first = time_steps(step, sync, a.warmup, a.repeats, a.steps)
    if compiled:
        notes.append(f"first step (compile) {first:.0f}s")
    return sec, first, notes


def _cupy_gpu() -> bool:
    """Whether CuPy sees a GPU (used when PyTorch is absent)."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def measure_peaks_numpy(n: int) -> dict[str, float]:
    """Measured float32 matmul TFLOP/s of NumPy on the CPU (when PyTorch is absent)."""
    import numpy as np

    a = np.random.standard_normal((n, n)).astype(np.float32)
    b = np.random.standard_normal((n, n)).astype(np.float32)
    sec, _ = time_steps(lambda: a @ b, lambda: None, 1, 3, 2)
    return {"fp32": 2 * n**3 / sec / 1e12}


def measure_peaks(torch: Any, device: str, n: int) -> dict[str, float]:
    """Measured matmul TFLOP/s on ``device``: fp32 (no TF32), TF32 and fp16 (bf16 on CPU)."""
    kinds = [("fp32", torch.float32, False)]
    if device == "cuda":
        kinds += [("tf32", torch.float32, True), ("fp16", torch.float16, False)]
    else:
        kinds += [("bf16", torch.bfloat16, False)]
    peaks = {}
    for kind, dt, tf32 in kinds:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a = torch.randn(n, n, device=device).to(dt)
        b = torch.randn(n, n, device=device).to(dt)

        def sync() -> None:
            if device == "cuda":
                torch.cuda.synchronize()

        sec, _ = time_steps(lambda a=a, b=b: torch.mm(a, b), sync, 3, 10, 5)
        peaks[kind] = 2 * n**3 / sec / 1e12
        del a, b
    torch.backends.cuda.matmul.allow_tf32 = False
    return peaks


# --------------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------------


def render(rows: list[Row], info: dict[str, Any], peaks: dict[str, float], device: str) -> str:
    """Markdown report: environment, peaks, and the table."""
    lines = [f"# Training-step throughput, {info.get('device_name', device)}", ""]
    lines += [f"- {k}: {v}" for k, v in info.items() if k not in ("models",)]
    lines.append(
        "- measured matmul peak (TFLOP/s): " + ", ".join(f"{k} {v:.3g}" for k, v in peaks.items())
    )
    lines += [
        "",
        "| model | params | fwd GFLOP/img | framework / variant | images/s | step ms "
        "| vs PyTorch AMP eager | TFLOP/s | % of peak | notes |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        m = info["models"].get(r.model, {})
        params, flops = m.get("params"), m.get("fwd_flops_per_image")
        base = next(
            (
                b.images_s
                for b in rows
                if b.model == r.model
                and b.framework == "pytorch"
                and b.variant == "amp"
                and not b.compiled
            ),
            None,
        )
        kind = PEAK_KIND.get(r.variant, "fp32")
        if device != "cuda" and kind == "fp16":
            kind = "bf16" if r.framework == "pytorch" else ""
        if r.images_s:
            tflops = 3 * flops * r.images_s / 1e12 if flops else None
            ratio = f"{r.images_s / base:.2f}" if base else "-"
            peak = peaks.get(kind)
            frac = f"{100 * tflops / peak:.1f}% {kind}" if tflops and peak else "-"
            cells = [
                f"{r.images_s:,.0f}" if r.images_s >= 100 else f"{r.images_s:.3g}",
                f"{r.step_ms:.1f}",
                ratio,
                f"{tflops:.3g}" if tflops else "-",
                frac,
            ]
        else:
            cells = ["-"] * 5
        lines.append(
            f"| {r.model} | {f'{params:,}' if params else '-'} | "
            f"{f'{flops / 1e9:.3f}' if flops else '-'} | {r.label} | "
            + " | ".join(cells)
            + f" | {'; '.join(r.notes)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse options; run the worker or the whole benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=None)
    ap.add_argument("--batch", type=int, default=None, help="default 128 (--quick: 4)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps (default 5)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs (default 7)")
    ap.add_argument("--steps", type=int, default=None, help="steps per timed run (default 3)")
    ap.add_argument("--device", choices=["cuda", "cpu"], default=None)
    ap.add_argument("--torch-variants", nargs="*", default=list(TORCH_VARIANTS))
    ap.add_argument("--chainer-variants", nargs="*", default=list(CHAINER_VARIANTS))
    ap.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--loss-scale", type=float, default=1024.0, help="Chainer mixed16 (static)")
    ap.add_argument("--budget-s", type=float, default=None, help="skip variants after this")
    ap.add_argument("--gemm-n", type=int, default=None, help="peak matmul size (8192)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny CPU-friendly smoke run")
    ap.add_argument("--out", help="folder for bench_<models>.{md,json}")
    ap.add_argument("--name", help="file stem in --out instead of bench_<models>")
    ap.add_argument(
        "--no-torch",
        action="store_true",
        help="chainer_nets only (also when PyTorch is not installed; peaks from NumPy)",
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--chainer-device", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    q = a.quick
    a.batch = a.batch or (4 if q else 128)
    a.warmup = a.warmup if a.warmup is not None else (1 if q else 5)
    a.repeats = a.repeats or (2 if q else 7)
    a.steps = a.steps or (1 if q else 3)
    a.gemm_n = a.gemm_n or (512 if q else 8192)

    if a.worker:
        a.model = a.models[0]
        print("RESULT " + json.dumps(chainer_worker(a)), flush=True)
        return 0

    sys.path.insert(0, HERE)
    import numpy as np

    torch: Any = None
    if not a.no_torch:
        try:
            import torch
        except ImportError:
            a.no_torch = True
            print("PyTorch is not installed: timing chainer_nets only", flush=True)
    if torch is not None:
        from torch_models import BENCH_MODELS, count_params, forward_flops, get_torch_model
    else:
        BENCH_MODELS = ("wrn28_10", "resnet110")

    t_start = time.monotonic()
    if a.device is None:
        gpu = torch.cuda.is_available() if torch is not None else _cupy_gpu()
        a.device = "cuda" if (not q or gpu) else "cpu"
    if a.device == "cuda" and torch is not None and not torch.cuda.is_available():
        print("error: no CUDA device for PyTorch (use --quick or --device cpu)", file=sys.stderr)
        return 2
    if a.no_torch:
        a.torch_variants = []
    a.chainer_device = a.chainer_device or ("@cupy:0" if a.device == "cuda" else "@numpy")
    models = a.models or (["resnet20"] if q else list(BENCH_MODELS))
    compile_on = a.compile == "on" or (a.compile == "auto" and a.device == "cuda")
    budget = a.budget_s if a.budget_s is not None else float("inf")
    if torch is not None:
        torch.backends.cudnn.benchmark = True

    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else "(not used)",
        "batch": a.batch,
        "timing": f"{a.warmup} warm-up steps, median of {a.repeats} runs x {a.steps} steps",
        "torch.compile": "on" if compile_on else "off",
        "step": f"fwd + softmax CE + bwd + momentum SGD ({MOMENTUM}, wd {WEIGHT_DECAY})",
        "models": {},
    }
    if a.device == "cuda" and torch is not None:
        info["device_name"] = torch.cuda.get_device_name(0)
        info["cuda / cudnn (torch)"] = f"{torch.version.cuda} / {torch.backends.cudnn.version()}"
    elif a.device == "cuda":
        info["device_name"] = "GPU (PyTorch absent)"
    else:
        threads = f", torch threads {torch.get_num_threads()}" if torch is not None else ""
        info["device_name"] = f"CPU ({os.cpu_count()} cores{threads})"
    if torch is not None:
        peaks = measure_peaks(torch, a.device, a.gemm_n)
    else:
        peaks = measure_peaks_numpy(a.gemm_n) if a.device == "cpu" else {}
    print("peaks TFLOP/s:", {k: round(v, 2) for k, v in peaks.items()}, flush=True)

    rows: list[Row] = []
    tag = "_".join(models)
    stem = a.name or f"bench_{tag}"
    out_md = os.path.join(a.out, f"{stem}.md") if a.out else None

    def emit(row: Row) -> None:
        rows.append(row)
        ips = f"{row.images_s:,.1f} img/s" if row.images_s else "-"
        print(f"{row.model:14s} {row.label:28s} {ips:>16s}  {'; '.join(row.notes)}", flush=True)
        if out_md:
            os.makedirs(a.out, exist_ok=True)
            with open(out_md, "w") as f:
                f.write(render(rows, info, peaks, a.device))
            with open(out_md[:-3] + ".json", "w") as f:
                payload = {"info": info, "peaks": peaks, "rows": [asdict(r) for r in rows]}
                json.dump(payload, f, indent=1)

    def over_budget() -> bool:
        return time.monotonic() - t_start > budget

    x, t = make_batch(a.batch, a.seed)
    for name in models:
        m_info: dict[str, Any] = {}
        if torch is not None:
            try:
                tm = get_torch_model(name)
            except Exception as e:  # no twin (yet) for this model
                row = Row(name, "pytorch", "-")
                row.notes.append(f"skipped: no PyTorch twin ({type(e).__name__}: {e})")
                emit(row)
                continue
            m_info = {"params": count_params(tm), "fwd_flops_per_image": forward_flops(tm)}
            del tm
        info["models"][name] = m_info
        plan: list[tuple[str, str, bool]] = [("pytorch", v, False) for v in a.torch_variants]
        plan += [("chainer", v, False) for v in a.chainer_variants]
        if compile_on or a.compile == "auto":  # "off": no compiled rows at all
            plan += [("pytorch", v, True) for v in a.torch_variants]
        # The float32 Chainer worker goes first: its parameter count is asserted right away.
        plan.sort(key=lambda p: (p[0] != "chainer" or p[1] != "float32",))
        for fw, variant, compiled in plan:
            row = Row(name, fw, variant, compiled)
            if compiled and not compile_on:
                row.notes.append("compile off (CPU smoke run; --compile on to try)")
                emit(row)
                continue
            if variant == "tf32" and a.device != "cuda":
                row.notes.append("skipped: TF32 needs an NVIDIA GPU (Ampere or newer)")
                emit(row)
                continue
            if over_budget():
                row.notes.append(f"skipped: --budget-s {budget:.0f} reached")
                emit(row)
                continue
            if fw == "chainer":
                left = budget - (time.monotonic() - t_start) + 120
                res = run_chainer_variant(name, variant, a, min(left, 3600))
                if "error" in res:
                    row.notes.append(res["error"])
                else:
                    if torch is None:  # counts from the Chainer side alone
                        m_info.setdefault("params", res["params"])
                        m_info.setdefault("fwd_flops_per_image", res["fwd_flops_per_image"])
                    if res["params"] != m_info["params"]:
                        raise SystemExit(
                            f"{name}: chainer_nets has {res['params']:,} parameters, "
                            f"PyTorch {m_info['params']:,}"
                        )
                    if res["fwd_flops_per_image"] != m_info["fwd_flops_per_image"]:
                        row.notes.append(
                            f"FLOPs differ: Chainer {res['fwd_flops_per_image']:,} vs "
                            f"PyTorch {m_info['fwd_flops_per_image']:,}"
                        )
                    row.step_ms = 1e3 * res["step_s"]
                    row.images_s = a.batch / res["step_s"]
                    row.notes += res["notes"]
                    if "cupy_gemm_tflops" in res:
                        row.notes.append(f"CuPy GEMM {res['cupy_gemm_tflops']:.0f} TFLOP/s")
                    m_info["chainer_env"] = res["env"]
            else:
                try:
                    sec, _, notes = torch_variant(torch, name, variant, compiled, x, t, a.device, a)
                    row.step_ms, row.images_s = 1e3 * sec, a.batch / sec
                    row.notes += notes
                    if a.device == "cuda":
                        torch.cuda.empty_cache()  # the variant's model is gone: free its cache
                except Exception as e:  # compile may fail: report it, keep going
                    msg = str(e).strip().splitlines()
                    row.notes.append(f"failed: {type(e).__name__}: {msg[0][:160] if msg else ''}")
                    if compiled:
                        torch._dynamo.reset()
            emit(row)
        if compile_on and torch is not None:
            torch._dynamo.reset()

    report = render(rows, info, peaks, a.device)
    print("\n" + report, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
