"""Run what a training run touches in Chainer and print every result's dtype and value as JSON.

Run it once with NumPy 1 and once with NumPy 2 and compare the two outputs with ``--diff``:
a changed dtype or value is a change of NumPy's promotion rules (NEP 50) reaching Chainer's
library code (reporter, evaluator, triggers, optimizers and their hooks, initializers,
serializers, iterators, learning-rate extensions)::

    python tools/chainer_suite/nep50_probe.py > numpy2.json
    PYTHONPATH=<a folder holding NumPy 1.26> python tools/chainer_suite/nep50_probe.py > numpy1.json
    python tools/chainer_suite/nep50_probe.py --diff numpy1.json numpy2.json

Every probe uses fixed seeds, float32 data (Chainer's default) and one thread of BLAS work,
so the two runs differ only where NumPy's results do. The fast CPU path is switched off, so
only Chainer's own code is compared.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

os.environ.setdefault("CHAINER_NETS_CPU_FAST", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import chainer_nets  # noqa: E402, F401, I001  (compat layer before chainer)
import numpy as np  # noqa: E402

import chainer  # noqa: E402
import chainer.links as L  # noqa: E402
from chainer import initializers, optimizer_hooks, optimizers, training  # noqa: E402
from chainer.training import extensions, triggers  # noqa: E402

PROBES: dict[str, Callable[[], dict[str, Any]]] = {}


def probe(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Register a probe: a function returning named results."""
    PROBES[fn.__name__] = fn
    return fn


def describe(v: Any) -> dict[str, Any]:
    """Type, dtype and float64 values of one result."""
    if isinstance(v, chainer.Variable):
        v = v.array
    out: dict[str, Any] = {"type": type(v).__name__}
    if isinstance(v, np.ndarray | np.generic) and v.dtype.kind in "biuf":
        out["dtype"] = str(v.dtype)
        out["values"] = [float(x) for x in np.asarray(v, dtype=np.float64).ravel()[:64]]
    elif isinstance(v, bool | int | float):
        out["values"] = [float(v)]
    else:
        out["repr"] = repr(v)[:200]
    return out


def _losses(n: int = 2000) -> np.ndarray:
    return (np.random.RandomState(0).randn(n) * 0.9 + 2.3).astype(np.float32)


@probe
def reporter_summary() -> dict[str, Any]:
    """Summary / DictSummary over float32 scalars, 0-d arrays and Variables."""
    s, d = chainer.reporter.Summary(), chainer.reporter.DictSummary()
    for i, v in enumerate(_losses()):
        val = [v, np.asarray(v), chainer.Variable(np.asarray(v))][i % 3]
        s.add(val if not isinstance(val, chainer.Variable) else val.array)
        d.add({"loss": val})
    mean, std = s.make_statistics()
    stats = d.make_statistics()
    return {"mean": mean, "std": std, "dict_mean": d.compute_mean()["loss"], **stats}


def _classifier() -> L.Classifier:
    np.random.seed(0)
    return L.Classifier(L.Linear(8, 4))


def _dataset(n: int = 96) -> chainer.datasets.TupleDataset:
    rng = np.random.RandomState(1)
    x = rng.randn(n, 8).astype(np.float32)
    t = rng.randint(0, 4, n).astype(np.int32)
    return chainer.datasets.TupleDataset(x, t)


@probe
def evaluator() -> dict[str, Any]:
    """Evaluator's means over a test set (batches of unequal size)."""
    it = chainer.iterators.SerialIterator(_dataset(), 10, repeat=False, shuffle=False)
    return dict(extensions.Evaluator(it, _classifier())())


def _trainer(
    out: str, extra: Callable[[training.Trainer], None], stop: tuple = (3, "epoch")
) -> training.Trainer:
    model = _classifier()
    opt = optimizers.MomentumSGD(0.1)
    opt.setup(model)
    it = chainer.iterators.SerialIterator(_dataset(), 16, shuffle=True)
    updater = training.updaters.StandardUpdater(it, opt)
    trainer = training.Trainer(updater, stop, out=out)
    extra(trainer)
    return trainer


@probe
def trainer_extensions() -> dict[str, Any]:
    """LogReport, MicroAverage, ParameterStatistics, the LR shifts and both triggers."""
    np.random.seed(3)
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as out:

        def extra(tr: training.Trainer) -> None:
            model = tr.updater.get_optimizer("main").target
            tr.extend(extensions.LogReport(trigger=(1, "epoch")))
            tr.extend(
                extensions.observe_value("correct", lambda t: np.float32(0.7)),
                trigger=(1, "iteration"),
            )
            tr.extend(
                extensions.observe_value("total", lambda t: np.int32(1)), trigger=(1, "iteration")
            )
            tr.extend(extensions.MicroAverage("correct", "total", "micro"))
            tr.extend(extensions.ParameterStatistics(model.predictor, prefix="p"))
            tr.extend(extensions.ExponentialShift("lr", 0.9))

        trainer = _trainer(out, extra)
        mm = triggers.MaxValueTrigger("main/accuracy", (1, "epoch"))
        es = triggers.EarlyStoppingTrigger(
            monitor="main/loss", patience=10, max_trigger=(3, "epoch")
        )
        fired = []

        def watch(tr: training.Trainer) -> None:
            fired.append((mm(tr), es(tr)))

        trainer.extend(watch, trigger=(1, "iteration"), priority=-1)
        trainer.run()
        log = trainer.get_extension("LogReport").log
        for i, entry in enumerate(log):
            for k, v in entry.items():
                res[f"epoch{i}/{k}"] = v
        res["triggers"] = [float(a) + 2 * float(b) for a, b in fired]
        res["lr"] = trainer.updater.get_optimizer("main").lr
        res["es_best"] = getattr(es, "best", None)
    return res


def _model_with_grads(seed: int = 0) -> L.Linear:
    np.random.seed(seed)
    model = L.Linear(16, 8)
    model.cleargrads()
    rng = np.random.RandomState(seed + 1)
    for p in model.params():
        p.grad = (rng.randn(*p.shape) * 3).astype(np.float32)
    return model


HOOKS = {
    "WeightDecay": lambda: optimizer_hooks.WeightDecay(1e-4),
    "Lasso": lambda: optimizer_hooks.Lasso(1e-4),
    "GradientClipping": lambda: optimizer_hooks.GradientClipping(1.0),
    "GradientHardClipping": lambda: optimizer_hooks.GradientHardClipping(-0.5, 0.5),
    "GradientNoise": lambda: optimizer_hooks.GradientNoise(0.3),
    "GradientLARS": lambda: optimizer_hooks.GradientLARS(threshold=1e-3, weight_decay=1e-4),
}


@probe
def optimizer_hooks_probe() -> dict[str, Any]:
    """Every optimizer hook on fixed float32 gradients, then one SGD step."""
    res = {}
    for name, make in HOOKS.items():
        np.random.seed(7)
        model = _model_with_grads()
        opt = optimizers.SGD(0.1)
        opt.setup(model)
        opt.add_hook(make())
        opt.update()
        for k, p in model.namedparams():
            res[f"{name}{k}/grad"] = p.grad
            res[f"{name}{k}/param"] = p.array
    # the intermediate scalars, whose dtype shows a promotion change directly
    from chainer.optimizer_hooks import gradient_clipping

    model = _model_with_grads()
    res["GradientClipping/sqnorm"] = gradient_clipping._sum_sqnorm_grads(list(model.params()))[0]
    g = model.W.grad
    g_norm = np.linalg.norm(g)
    res["GradientLARS/local_rate"] = np.linalg.norm(model.W.array) / (1e-9 + g_norm + 1e-4 * g_norm)
    return res


OPTIMIZERS = {
    "SGD": lambda: optimizers.SGD(0.1),
    "MomentumSGD": lambda: optimizers.MomentumSGD(0.1),
    "CorrectedMomentumSGD": lambda: optimizers.CorrectedMomentumSGD(0.1),
    "NesterovAG": lambda: optimizers.NesterovAG(0.1),
    "AdaGrad": lambda: optimizers.AdaGrad(0.1),
    "AdaDelta": lambda: optimizers.AdaDelta(),
    "RMSprop": lambda: optimizers.RMSprop(0.01),
    "RMSpropGraves": lambda: optimizers.RMSpropGraves(0.01),
    "SMORMS3": lambda: optimizers.SMORMS3(0.01),
    "Adam": lambda: optimizers.Adam(),
    "AdamW": lambda: optimizers.AdamW(weight_decay_rate=0.01),
    "AMSGrad": lambda: optimizers.AMSGrad(),
    "AdaBound": lambda: optimizers.AdaBound(),
    "MSVAG": lambda: optimizers.MSVAG(),
}


@probe
def optimizers_probe() -> dict[str, Any]:
    """Three updates of every optimizer; parameters, state and derived rates."""
    res: dict[str, Any] = {}
    for name, make in OPTIMIZERS.items():
        model = _model_with_grads()
        opt = make()
        opt.setup(model)
        for step in range(3):
            rng = np.random.RandomState(10 + step)
            for p in model.params():
                p.grad = (rng.randn(*p.shape) * 3).astype(np.float32)
            opt.update()
        for k, p in model.namedparams():
            res[f"{name}{k}"] = p.array
            for sk, sv in sorted(p.update_rule.state.items()):
                res[f"{name}{k}/state/{sk}"] = sv
        for attr in ("alpha_t", "lr_t"):
            rule = next(model.params()).update_rule
            if hasattr(rule, attr):
                res[f"{name}/{attr}"] = getattr(rule, attr)
    return res


INITIALIZERS = {
    "Normal": lambda: initializers.Normal(0.05),
    "LeCunNormal": lambda: initializers.LeCunNormal(),
    "GlorotNormal": lambda: initializers.GlorotNormal(),
    "HeNormal": lambda: initializers.HeNormal(),
    "Uniform": lambda: initializers.Uniform(0.05),
    "LeCunUniform": lambda: initializers.LeCunUniform(),
    "GlorotUniform": lambda: initializers.GlorotUniform(),
    "HeUniform": lambda: initializers.HeUniform(),
    "Orthogonal": lambda: initializers.Orthogonal(),
    "Constant": lambda: initializers.Constant(0.1),
    "Identity": lambda: initializers.Identity(0.5),
    "One": lambda: initializers.One(),
}


@probe
def initializers_probe() -> dict[str, Any]:
    """Every initializer on float32 and float16 arrays."""
    res = {}
    for name, make in INITIALIZERS.items():
        for dtype in (np.float32, np.float16):
            np.random.seed(5)
            shape = (6, 6) if name in ("Identity", "Orthogonal") else (6, 3, 3, 3)
            a = np.empty(shape, dtype)
            make()(a)
            res[f"{name}/{np.dtype(dtype).name}"] = a
    return res


@probe
def serializers_probe() -> dict[str, Any]:
    """npz round trip of a Trainer (LogReport's running sums, optimizer state, iterator)."""
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as out:

        def extra(tr: training.Trainer) -> None:
            tr.extend(extensions.LogReport(trigger=(1, "epoch")))

        tr = _trainer(out, extra, stop=(10, "iteration"))
        tr.run()
        buf = io.BytesIO()
        chainer.serializers.save_npz(buf, tr)
        buf.seek(0)
        with np.load(buf) as f:
            for k in sorted(f.files):
                if "_summary" in k or "_x" in k or "/t" in k or "epoch_detail" in k:
                    res[k] = f[k]
        buf.seek(0)
        tr2 = _trainer(out, extra, stop=(10, "iteration"))
        chainer.serializers.load_npz(buf, tr2)
        summ = tr2.get_extension("LogReport")._summary._summaries
        for k, s in sorted(summ.items()):
            res[f"restored/{k}/_x"] = s._x
        res["restored/iteration"] = tr2.updater.iteration
    return res


@probe
def iterators_probe() -> dict[str, Any]:
    """Order and epoch_detail of the serial and multiprocess iterators (shuffled, seeded)."""
    res: dict[str, Any] = {}
    data = list(range(10))
    np.random.seed(11)
    it = chainer.iterators.SerialIterator(data, 3, shuffle=True)
    order = []
    for _ in range(7):
        order += it.next()
        res[f"serial/epoch_detail{len(order)}"] = it.epoch_detail
    res["serial/order"] = np.array(order)
    it = chainer.iterators.MultiprocessIterator(
        data, 3, shuffle=False, n_processes=1, n_prefetch=1, shared_mem=1000
    )
    try:
        res["multiprocess/first"] = np.array(it.next())
        res["multiprocess/epoch_detail"] = it.epoch_detail
    finally:
        it.finalize()
    return res


def run_all() -> dict[str, Any]:
    """Every probe's described results."""
    out: dict[str, Any] = {"numpy": np.__version__}
    for name, fn in PROBES.items():
        try:
            out[name] = {k: describe(v) for k, v in fn().items()}
        except Exception as e:  # a probe failing is a result too
            out[name] = {"error": describe(f"{type(e).__name__}: {e}")}
    return out


def diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Lines naming every result whose type, dtype or value differs between two runs."""
    lines = [f"NumPy {a['numpy']} vs {b['numpy']}"]
    for probe_name in PROBES:
        pa, pb = a.get(probe_name, {}), b.get(probe_name, {})
        for key in sorted(set(pa) | set(pb)):
            x, y = pa.get(key), pb.get(key)
            if x == y:
                continue
            if x is None or y is None or "values" not in x or "values" not in y:
                lines.append(f"{probe_name}/{key}: {x} -> {y}")
                continue
            va, vb = np.array(x["values"]), np.array(y["values"])
            rel = float(np.max(np.abs(va - vb) / np.maximum(np.abs(va), 1e-30))) if va.size else 0
            tx, ty = x.get("dtype", x["type"]), y.get("dtype", y["type"])
            lines.append(f"{probe_name}/{key}: {tx} -> {ty}, max relative change {rel:.3g}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print the probe results, or the differences between two recorded runs."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--diff", nargs=2, metavar=("NUMPY1_JSON", "NUMPY2_JSON"))
    args = p.parse_args(argv)
    if args.diff:
        with open(args.diff[0]) as fa, open(args.diff[1]) as fb:
            lines = diff(json.load(fa), json.load(fb))
        print("\n".join(lines))
        return 0
    json.dump(run_all(), sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
