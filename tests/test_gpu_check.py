"""The GPU correctness check's logic, on the CPU, with the reference on its own random stream.

On the GPU the device side draws from CuPy's generator and the NumPy reference from NumPy's:
the check must compare only what does not depend on the random stream. Here both sides run
on NumPy, the reference seeded differently (as the check always does).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import chainer
import numpy as np

import chainer_nets  # noqa: F401  (compat layer before chainer)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "gpu"))

import check_correctness as cc  # noqa: E402

CPU = chainer.get_device("@numpy")
SWAPOUT = "swapout_v2_20_w4:widen=1,samples=2"  # 2 sampled passes: stochastic, and quick


def args(**kw) -> argparse.Namespace:
    """The check's default options (as parsed by its command line)."""
    base = dict(
        seed=0, batch=2, no_train=False, plain_reference=True, dtypes=["float32", "float64"],
        tol=cc.TOL32, tol64=cc.TOL64, grad_l2_tol=cc.GRAD_L2_TOL32, noise_factor=cc.NOISE_FACTOR,
    )  # fmt: skip
    base.update(kw)
    return argparse.Namespace(**base)


def batch(n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random input batch and labels."""
    rng = np.random.RandomState(0)
    return rng.standard_normal((n, 3, 32, 32)).astype(np.float32), rng.randint(0, 10, n).astype(
        np.int32
    )


def test_stochastic_swapout_inference_differs_between_random_streams() -> None:
    """The failure the check must avoid: default (stochastic) inference on two streams."""
    model = cc.build_model(SWAPOUT)
    x, t = batch()
    cc.calibrate_bn(model, x, 0)
    a = cc.run(copy.deepcopy(model), CPU, x, t, False, 0)
    b = cc.run(copy.deepcopy(model), CPU, x, t, False, 0 + cc.REFERENCE_SEED_OFFSET)
    assert cc.norm_err(a["logits"], b["logits"]) > 1e-3
    assert not cc.is_deterministic(model, x, t, train=False)
    assert cc.is_deterministic(model, x, t, train=False, config=cc.DETERMINISTIC_TEST_CONFIG)


def test_swapout_passes_in_deterministic_inference() -> None:
    """The check compares swapout's test mode under deterministic inference, and it passes."""
    r = cc.check_model(SWAPOUT, CPU, args())
    assert r.ok, r.notes
    assert set(r.errors) == {"float32 test", "float64 test"}
    assert any("swapout_inference=deterministic" in n for n in r.notes)
    assert r.errors["float64 test"]["grads"] < 1e-12


def test_zero_weighted_branch_is_not_mistaken_for_deterministic() -> None:
    """A dropped block scaled by a weight that starts at 0 leaves the logits unchanged but not
    the gradients: train mode is stochastic, test mode is not."""
    model = cc.build_model("wresnet_d1192:n=1")
    x, t = batch()
    assert not cc.is_deterministic(model, x, t, train=True)
    assert cc.is_deterministic(model, x, t, train=False)
    r = cc.check_model("wresnet_d1192:n=1", CPU, args(dtypes=["float64"]))
    assert r.ok and not r.train_deterministic and set(r.errors) == {"float64 test"}


def test_a_wrong_kernel_fails_the_check(monkeypatch) -> None:
    """A device-side error of 1e-6 relative in one convolution fails the float64 check."""
    import chainer.functions as F

    real = F.convolution_2d
    calls = {"n": 0}

    def off(x, W, *a, **kw):
        y = real(x, W, *a, **kw)
        calls["n"] += 1
        return y * (1 + 1e-6) if calls["n"] == 3 else y

    model = cc.to_float64(cc.build_model("resnet20"))
    x, t = batch()
    ref = cc.run(copy.deepcopy(model), CPU, x.astype(np.float64), t, False, 1)
    import chainer.links.connection.convolution_2d as conv_mod

    monkeypatch.setattr(conv_mod.convolution_2d, "convolution_2d", off)
    dev = cc.run(copy.deepcopy(model), CPU, x.astype(np.float64), t, False, 0)
    err = cc.compare(dev, ref)
    assert calls["n"] > 3 and err["grads"] > cc.TOL64


def test_representative_set_covers_every_model_class() -> None:
    """One model per registered model class, each spec buildable."""
    specs = cc.representative_models()
    classes = [chainer_nets.get_model_info(s.partition(":")[0]).factory for s in specs]
    assert len(classes) == len(set(classes))
    assert set(classes) == {i.factory for i in chainer_nets.list_models()}
    assert cc.build_model("wresnet_d1192:n=3").blocks is not None


def test_report_is_written_after_every_model(tmp_path) -> None:
    """The JSON report holds each finished model (so a cut-off run keeps its rows)."""
    rc = cc.main(
        ["--device", "@numpy", "--plain-reference", "--models", "wresnet_d1192:n=1",
         "--batch", "2", "--dtypes", "float64", "--out", str(tmp_path)]
    )  # fmt: skip
    assert rc == 0
    data = json.loads((tmp_path / "check_correctness.json").read_text())
    assert [r["model"] for r in data["results"]] == ["wresnet_d1192:n=1"]
    assert "PASS" in (tmp_path / "check_correctness.md").read_text()
