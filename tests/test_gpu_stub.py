"""The CuPy path on a machine without a GPU: a stub of CuPy 14.2's import-time surface.

``tests/cupy14_stub`` holds exactly the CuPy names Chainer 7.8.1 touches while
``import chainer_nets`` runs and ``chainer.get_device('@cupy:0')`` is called (each one checked
against CuPy v14.2.0's source, see its docstring), and, like CuPy 14, no cuDNN modules.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUB = ROOT / "tests" / "cupy14_stub"
sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))

import device_run  # noqa: E402

PROBE = """
import chainer_nets, chainer, cupy
assert cupy.__version__ == "14.2.0"
assert chainer.backends.cuda.available, chainer.backends.cuda._resolution_error
assert not chainer.backends.cuda.cudnn_enabled
d = chainer.get_device("@cupy:0")
assert type(d).__name__ == "GpuDevice" and d.device.id == 0 and d.xp is cupy, d
assert chainer.get_device(0) == d
print("ok", d)
"""


def stub_env(**extra: str) -> dict:
    """Environment whose Python imports the stub as ``cupy``."""
    env = {k: v for k, v in os.environ.items() if k != "CHAINER_CUDNN"}
    env["PYTHONPATH"] = os.pathsep.join([str(STUB), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def probe(env: dict) -> subprocess.CompletedProcess:
    """Run the probe under ``-W error`` (any warning fails)."""
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", PROBE], env=env, capture_output=True, text=True
    )


def test_import_and_gpu_device_with_chainer_cudnn_0() -> None:
    """With CHAINER_CUDNN=0 the package imports and @cupy:0 resolves, with no warning at all."""
    r = probe(stub_env(CHAINER_CUDNN="0"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("ok")


def test_without_chainer_cudnn_the_warning_stops_a_strict_run() -> None:
    """Unset, Chainer's "cuDNN is not enabled" warning is what stops a ``-W error`` run."""
    r = probe(stub_env())
    assert r.returncode != 0
    assert "cuDNN is not enabled" in r.stderr


def test_device_run_sets_chainer_cudnn_when_cupy_has_no_cudnn() -> None:
    """The device script detects CuPy 14's missing cuDNN modules (and so sets CHAINER_CUDNN=0)."""
    assert not device_run.cupy_has_cudnn(sys.executable, stub_env())
