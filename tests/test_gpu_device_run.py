"""Dry run of the one-call GPU script on the CPU (``--device @numpy``, tiny sizes).

Every step runs for real through the same driver, in the same order, writing the same files;
only what needs CuPy (the host-read detector, TF32) or PyTorch (the twin and its peak) is
skipped where those are absent. So the device call cannot fail on plumbing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu" / "device_run.py"


def embedded_json(path: Path) -> dict:
    """The JSON block at the end of a Markdown report."""
    text = path.read_text()
    return json.loads(text[text.rindex("```json\n") + 8 : text.rindex("\n```")])


def test_device_script_dry_run(tmp_path: Path) -> None:
    """All four steps pass on NumPy; at most 8 files come back; each holds its results."""
    out = tmp_path / "out"
    env = os.environ | {"TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "@numpy", "--tiny", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all(p.is_file() for p in out.iterdir()), files
    summary = (out / "summary.md").read_text()
    for step in ("check", "cudnn", "guard", "bench", "train"):
        assert f"| {step} | 0 |" in summary, summary

    check = embedded_json(out / "check_correctness.md")
    assert [(r["model"], r["ok"]) for r in check["results"]] == [("resnet20", True)]
    assert "float64 train" in check["results"][0]["errors"]
    cudnn = embedded_json(out / "check_cudnn.md")["results"]
    # the cuDNN path needs CuPy: skipped, and said why
    assert [(r["model"], r["skipped"], r["notes"]) for r in cudnn] == [
        ("resnet20 [cudnn]", True, ["the cuDNN path needs CuPy"])
    ]

    assert "1/1 models pass" in (out / "guard.md").read_text()

    rows = json.loads((out / "bench.json").read_text())["rows"]
    measured = {(r["framework"], r["variant"]) for r in rows if r["images_s"]}
    assert {("chainer", "float32"), ("chainer", "mixed16")} <= measured
    cudnn = [r for r in rows if r["variant"] == "float32+cudnn"]
    assert len(cudnn) == 1 and not cudnn[0]["images_s"]
    assert "needs CuPy" in cudnn[0]["notes"][0]

    train = (out / "train.md").read_text()
    assert "**OK**" in train
    assert '"max_abs_diff": 0.0' in train  # the resume is exact on NumPy
    assert "--resume" in train and "| cut |" in train


def test_gpu_plan_command_lines_parse(monkeypatch) -> None:
    """Every step's command line of the GPU call is accepted by its script's parser (the dry
    run uses the tiny plan, so this covers the GPU-only options)."""
    import argparse
    import importlib.util

    sys.path.insert(0, str(SCRIPT.parent))
    import device_run

    class Parsed(Exception):
        pass

    real = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise Parsed(real(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    plan = device_run.gpu_plan(sys.executable, list(device_run.BENCH_MODELS))
    assert list(plan) == list(device_run.STEPS)
    for step, cmd in plan.items():
        path = Path(cmd[1])
        spec = importlib.util.spec_from_file_location(f"_plan_{step}", path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look it up
        spec.loader.exec_module(module)
        try:
            module.main([*cmd[2:], "--out", "unused"])
        except Parsed as p:
            ns = p.args[0]
        else:
            raise AssertionError(f"{step}: main() returned without parsing")
        assert "cupy" in (getattr(ns, "device", None) or "@cupy:0")
    assert ns.device == "@cupy:0"  # the train step
