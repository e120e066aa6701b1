"""Tests for :mod:`chainer_nets.cpu_fast` as a whole: install, the switch, a small net trained
with the fast path on and off."""

from __future__ import annotations  # noqa: I001  (chainer_nets must be imported before chainer)

import os
import subprocess
import sys

import chainer_nets  # noqa: F401  (installs the NumPy-2 compat layer first)
import numpy as np

import chainer
import chainer.functions as F
import chainer.links as L
from chainer_nets import cpu_fast
from chainer_nets.cpu_fast import conv

cpu_fast.install()


def test_switch_turns_it_off():
    x = np.random.randn(2, 3, 5, 5).astype(np.float32)
    W = np.random.randn(4, 3, 3, 3).astype(np.float32)
    with cpu_fast.enabled(False):
        assert not cpu_fast.is_enabled()
        y = F.convolution_2d(x, W)
        assert not isinstance(y.creator, conv.FastConvolution2D)
    with chainer.using_config("cpu_fast", False):
        assert not isinstance(F.convolution_2d(x, W).creator, conv.FastConvolution2D)
    assert cpu_fast.is_enabled()
    y = L.Convolution2D(3, 4, 3)(x)
    assert isinstance(y.creator, conv.FastConvolution2D)


def test_environment_variable_disables_at_install():
    code = (
        "import chainer_nets, chainer, numpy as np\n"
        "from chainer_nets import cpu_fast\n"
        "cpu_fast.install()\n"
        "import chainer.functions as F\n"
        "y = F.convolution_2d(np.ones((1, 2, 4, 4), 'f'), np.ones((3, 2, 3, 3), 'f'))\n"
        "print(type(y.creator).__name__, cpu_fast.is_enabled())\n"
    )
    env = dict(os.environ, CHAINER_NETS_CPU_FAST="0")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["Convolution2DFunction", "False"]


def test_cupy_free_numpy_path():
    import pathlib

    import chainer_nets.cpu_fast as mod

    for path in pathlib.Path(mod.__file__).parent.glob("*.py"):
        src = path.read_text()
        assert "import cupy" not in src and "import torch" not in src, path
    x = np.random.randn(2, 3, 5, 5).astype(np.float32)
    W = np.random.randn(4, 3, 3, 3).astype(np.float32)
    y = F.convolution_2d(x, W, pad=1)
    assert type(y.array) is np.ndarray


class _TinyNet(chainer.Chain):
    def __init__(self):
        super().__init__()
        with self.init_scope():
            self.c1 = L.Convolution2D(3, 8, 3, pad=1, nobias=True)
            self.b1 = L.BatchNormalization(8)
            self.c2 = L.Convolution2D(8, 8, 3, stride=2, pad=1, nobias=True, groups=2)
            self.b2 = L.BatchNormalization(8)
            self.c3 = L.Convolution2D(8, 16, 1, stride=2)
            self.fc = L.Linear(16, 10)

    def forward(self, x):
        h = F.relu(self.b1(self.c1(x)))
        h = F.relu(self.b2(self.c2(h)) + h[:, :, ::2, ::2])
        h = F.relu(self.c3(h))
        return self.fc(F.average_pooling_2d(h, h.shape[2:]))


def test_tiny_net_trains_identically():
    rng = np.random.RandomState(0)
    xs = rng.randn(6, 16, 3, 12, 12).astype(np.float32)
    ts = rng.randint(0, 10, (6, 16)).astype(np.int32)
    base = _TinyNet()
    results = {}
    for flag in (True, False):
        model = base.copy(mode="copy")
        opt = chainer.optimizers.MomentumSGD(0.05)
        opt.setup(model)
        losses = []
        with cpu_fast.enabled(flag):
            for x, t in zip(xs, ts, strict=True):
                loss = F.softmax_cross_entropy(model(x), t)
                model.cleargrads()
                loss.backward()
                opt.update()
                losses.append(float(loss.array))
            with chainer.using_config("train", False):
                pred = model(xs[0]).array
        results[flag] = (losses, pred, {k: v.array.copy() for k, v in model.namedparams()})
        results[flag][2].update({"rm": model.b1.avg_mean.copy(), "rv": model.b2.avg_var.copy()})
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-4)
    np.testing.assert_allclose(results[True][1], results[False][1], rtol=1e-3, atol=1e-4)
    for k, v in results[False][2].items():
        np.testing.assert_allclose(results[True][2][k], v, rtol=1e-3, atol=1e-4, err_msg=k)
