"""Every registered model: its paper's parameter count, and no host-side work per block."""

from __future__ import annotations

import ast
import inspect
import pathlib
import sys

import chainer
import numpy as np
import pytest

import chainer_nets.models
from chainer_nets import get_model, list_models
from chainer_nets.registry import count_params

MODELS_DIR = pathlib.Path(chainer_nets.models.__file__).parent


@pytest.mark.parametrize("info", list_models(), ids=lambda i: i.name)
def test_parameter_count_matches_paper(info) -> None:
    """Every registered model equals its paper's stated count at the paper's precision."""
    if info.paper_params is None:
        pytest.skip(f"{info.paper} states no parameter count")
    n = count_params(info.build(), info.params_counting)
    if info.params_mismatch:  # a documented difference: it must really be a difference
        assert round(n / 1e6, info.params_decimals) != pytest.approx(info.paper_params_m)
        return
    assert round(n / 1e6, info.params_decimals) == pytest.approx(info.paper_params_m), (
        f"{info.name}: {n} parameters ({info.params_counting}) vs paper {info.paper_params}M"
    )


def test_unknown_name() -> None:
    with pytest.raises(KeyError, match="Did you mean"):
        get_model("resnet111")


_RANDOM_NAMES = (
    "rand", "randn", "random", "random_sample", "uniform", "normal", "binomial", "randint",
    "standard_normal", "choice", "permutation", "shuffle",
)  # fmt: skip


@pytest.mark.parametrize("info", list_models(), ids=lambda i: i.name)
def test_no_model_draws_random_numbers_itself(info, monkeypatch) -> None:
    """A training forward pass of every model: no code in ``chainer_nets/models`` calls a
    random generator directly. Per-block draws go through ``chainer_nets.blocks``:
    ``bernoulli_mask`` draws on the arrays' device (CuPy on a GPU), ``host_uniform`` is the one
    host-side draw (the stochastic-depth gate, which steers control flow and reads nothing
    from the device). A model drawing ``float(xp.random.rand())`` per block would, on CuPy,
    draw on the device and read the value back to the host every block."""
    offenders: list[str] = []

    def wrap(fn):
        def spy(*args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if pathlib.Path(caller).parent == MODELS_DIR:
                offenders.append(f"{fn.__name__} from {pathlib.Path(caller).name}")
            return fn(*args, **kwargs)

        return spy

    model = info.build()
    for name in _RANDOM_NAMES:
        monkeypatch.setattr(np.random, name, wrap(getattr(np.random, name)))
    x = np.random.RandomState(0).randn(2, 3, 32, 32).astype(np.float32)
    with chainer.using_config("train", True), chainer.no_backprop_mode():
        np.random.seed(1)
        model(x)
    assert not offenders, f"{info.name}: {sorted(set(offenders))}"


_PER_BLOCK = {"forward", "residual", "skip", "logits", "weighted_residual", "transform_gate"}
_HOST_READS = {"float", "int", "bool"}
_HOST_METHODS = {"item", "tolist", "get", "to_cpu", "asnumpy"}


def _host_reads(tree: ast.AST) -> list[str]:
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef) or fn.name not in _PER_BLOCK:
            continue
        for node in ast.walk(fn):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if isinstance(f, ast.Name) and f.id in _HOST_READS:
                found.append(f"{fn.name}:{node.lineno} {f.id}()")
            elif isinstance(f, ast.Attribute) and f.attr in _HOST_METHODS:
                if not (f.attr == "get" and isinstance(f.value, ast.Name)):  # dict.get
                    found.append(f"{fn.name}:{node.lineno} .{f.attr}()")
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Attribute):
                if f.value.attr == "random":  # xp.random.X / numpy.random.X in a block
                    found.append(f"{fn.name}:{node.lineno} random.{f.attr}()")
    return found


@pytest.mark.parametrize("path", sorted(MODELS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_host_reads_in_per_block_code(path: pathlib.Path) -> None:
    """The methods that run once per block (``forward``, ``residual``, ...) convert no array
    to a Python number and copy nothing to the host: each would be a device-to-host
    synchronisation per block on CuPy."""
    assert _host_reads(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_host_read_scan_catches_a_per_block_draw() -> None:
    """The scan flags the pattern it is there for."""
    src = inspect.cleandoc(
        """
        class Block:
            def forward(self, x):
                if float(xp.random.rand()) >= self.survival:
                    return x
        """
    )
    assert len(_host_reads(ast.parse(src))) == 2
