"""CPU tests of the GPU scripts (need PyTorch: ``pytest benchmarks/gpu`` in the benchmark env)."""

from __future__ import annotations

import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

torch = pytest.importorskip("torch")

import check_correctness  # noqa: E402  (imports chainer_nets first)
import torch_models  # noqa: E402

import chainer_nets  # noqa: E402
from chainer_nets.registry import count_params  # noqa: E402


@pytest.mark.parametrize("name", torch_models.BENCH_MODELS)
def test_param_counts_equal(name: str) -> None:
    """Each PyTorch reference has exactly chainer_nets' parameter count."""
    chainer_count = count_params(chainer_nets.get_model(name))
    assert torch_models.count_params(torch_models.get_torch_model(name)) == chainer_count


def test_fractalnet_twin_matches_outputs_and_grads() -> None:
    """Copied weights give the same logits and weight gradients (eval mode, all columns).

    Exact in float64; in float32 the logits agree to rounding and the typical gradient
    entry too (single entries can differ by a few percent, see compare_with_chainer)."""
    r = torch_models.compare_with_chainer("fractalnet20", batch=2, dtype="float64")
    assert r["logits"] < 1e-12 and r["grad_max"] < 1e-10
    r = torch_models.compare_with_chainer("fractalnet20", batch=2)
    assert r["logits"] < 1e-5 and r["grad_median"] < 1e-5


def test_check_correctness_cpu(tmp_path) -> None:
    """The check passes comparing cpu_fast with Chainer's own kernels, and writes its report."""
    rc = check_correctness.main(
        ["--device", "@numpy", "--plain-reference", "--models", "resnet20", "--out", str(tmp_path)]
    )
    assert rc == 0
    data = json.loads((tmp_path / "check_correctness.json").read_text())
    assert data["results"][0]["ok"] and "float64 train" in data["results"][0]["errors"]


def test_bench_quick(tmp_path) -> None:
    """The benchmark's CPU smoke run measures both frameworks and writes its table."""
    import bench

    rc = bench.main(
        [
            "--quick",
            "--models",
            "resnet20",
            "--batch",
            "2",
            "--torch-variants",
            "fp32",
            "--chainer-variants",
            "float32",
            "--compile",
            "off",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    rows = json.loads((tmp_path / "bench_resnet20.json").read_text())["rows"]
    measured = {(r["framework"], r["variant"]) for r in rows if r["images_s"]}
    assert measured == {("pytorch", "fp32"), ("chainer", "float32")}
