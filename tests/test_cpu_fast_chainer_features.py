"""Chainer features under :mod:`chainer_nets.cpu_fast`, which ``import chainer_nets`` installs for
every Chainer program in the process: static graphs, double backprop, ``chainer.config``
switches and ``F.forget`` give the same results with the fast path on and off."""

from __future__ import annotations  # noqa: I001  (chainer_nets must be imported before chainer)

import chainer_nets  # noqa: F401  (installs the NumPy-2 compat layer and the fast path)
import numpy as np
import pytest

import chainer
import chainer.functions as F
import chainer.links as L
from chainer.graph_optimizations.static_graph import static_graph
from chainer_nets import cpu_fast
from chainer_nets.cpu_fast import conv, pool, workers


@pytest.fixture
def every_kernel(monkeypatch):
    """Send even these small arrays through every fast kernel: threads, the pool, element-wise."""
    monkeypatch.setattr(workers, "PARALLEL_MIN_SIZE", 1)
    monkeypatch.setattr(pool, "POOL_MIN_BYTES", 1)
    monkeypatch.setattr(pool, "POOL_MAX_BYTES", 1 << 30)
    yield
    cpu_fast.release_buffers()


class _Block(chainer.Chain):
    """Convolution, batch normalization, ReLU and a residual addition: every patched function."""

    def __init__(self) -> None:
        super().__init__()
        with self.init_scope():
            self.c1 = L.Convolution2D(3, 8, 3, pad=1)
            self.b1 = L.BatchNormalization(8)
            self.c2 = L.Convolution2D(8, 8, 3, stride=2, pad=1, nobias=True)
            self.fc = L.Linear(8 * 4 * 4, 10)

    def features(self, x: chainer.Variable) -> chainer.Variable:
        """The layers in front of the classifier."""
        h = F.relu(self.b1(self.c1(x)))
        return F.relu(self.c2(h) + h[:, :, ::2, ::2])

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores."""
        return self.fc(self.features(x))


class _StaticBlock(_Block):
    """The same chain with a static schedule (Chainer's ``@static_graph``)."""

    @static_graph(verbosity_level=-1)
    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores, recorded once and replayed."""
        return self.fc(self.features(x))


def _train(model_cls: type, fast: bool, steps: int = 4) -> tuple[list[float], dict]:
    """Train a fresh, identically initialised model for a few steps; losses and parameters."""
    np.random.seed(0)
    model = model_cls()
    opt = chainer.optimizers.MomentumSGD(0.05)
    opt.setup(model)
    rng = np.random.RandomState(1)
    losses = []
    with cpu_fast.enabled(fast):
        for _ in range(steps):
            x = rng.randn(16, 3, 8, 8).astype(np.float32)
            t = rng.randint(0, 10, 16).astype(np.int32)
            loss = F.softmax_cross_entropy(model(x), t)
            model.cleargrads()
            loss.backward()
            opt.update()
            losses.append(float(loss.array))
    return losses, {k: v.array.copy() for k, v in model.namedparams()}


@pytest.mark.parametrize("model_cls", [_StaticBlock, _Block])
def test_static_graph_conv_chain_trains_as_without_fast_path(every_kernel, model_cls):
    fast_losses, fast_params = _train(model_cls, True)
    ref_losses, ref_params = _train(model_cls, False)
    np.testing.assert_allclose(fast_losses, ref_losses, rtol=1e-5)
    for k, v in ref_params.items():
        np.testing.assert_allclose(fast_params[k], v, rtol=1e-4, atol=1e-5, err_msg=k)


def test_fast_path_steps_aside_while_a_schedule_is_recorded():
    x = np.random.randn(2, 3, 5, 5).astype(np.float32)
    W = np.random.randn(4, 3, 3, 3).astype(np.float32)
    assert conv._conv_supported(x, W, None, False, {}) == 1
    with chainer.using_config("schedule_func", object()):
        assert not cpu_fast.is_enabled()
        assert conv._conv_supported(x, W, None, False, {}) is None


def _double_backprop(fast: bool) -> tuple:
    """Gradient-penalty style second-order gradients through conv, BN, ReLU and add."""
    np.random.seed(0)
    model = _Block()
    for p in model.params():
        p.array = p.array.astype(np.float64)
    model.b1.avg_mean = model.b1.avg_mean.astype(np.float64)
    model.b1.avg_var = model.b1.avg_var.astype(np.float64)
    x = chainer.Variable(np.random.RandomState(2).randn(4, 3, 8, 8))
    with cpu_fast.enabled(fast):
        y = model(x)
        (gx,) = chainer.grad([F.sum(y * y)], [x], enable_double_backprop=True)
        model.cleargrads()
        F.sum(gx * gx).backward()
    return gx.array, {k: v.grad.copy() for k, v in model.namedparams()}


def test_double_backprop_through_every_patched_function(every_kernel):
    fast_gx, fast_grads = _double_backprop(True)
    ref_gx, ref_grads = _double_backprop(False)
    np.testing.assert_allclose(fast_gx, ref_gx, rtol=1e-9, atol=1e-12)
    for k, v in ref_grads.items():
        np.testing.assert_allclose(fast_grads[k], v, rtol=1e-7, atol=1e-10, err_msg=k)


CONFIGS = [
    {"use_cudnn": "always"},
    {"use_cudnn": "never"},
    {"cudnn_deterministic": True},
    {"type_check": False},
    {"enable_backprop": False},
    {"train": False},
    {"lazy_grad_sum": True},
    {"debug": True},
]


def _step_under(config: dict, fast: bool) -> tuple:
    """Forward (and backward, when backprop is on) of a fresh model under ``config``."""
    np.random.seed(0)
    model = _Block()
    x = np.random.RandomState(3).randn(8, 3, 8, 8).astype(np.float32)
    with cpu_fast.enabled(fast):
        with chainer.using_config(*next(iter(config.items()))):
            y = model(x)
            if y.creator is None:  # no graph (enable_backprop=False): forward only
                return (y.array,)
            model.cleargrads()
            F.sum(y * y).backward()
    return (y.array, *(p.grad for _, p in sorted(model.namedparams())))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "{}={}".format(*next(iter(c.items()))))
def test_config_switches_give_the_same_results(every_kernel, config):
    fast = _step_under(config, True)
    ref = _step_under(config, False)
    assert len(fast) == len(ref)
    for a, b in zip(fast, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _forget(fast: bool) -> tuple:
    """Gradients of a model whose feature block is wrapped in ``F.forget``."""
    np.random.seed(0)
    model = _Block()
    x = chainer.Variable(np.random.RandomState(4).randn(8, 3, 8, 8).astype(np.float32))
    with cpu_fast.enabled(fast):
        h = F.forget(model.features, x)
        F.sum(model.fc(h) ** 2).backward()
    return (h.array, x.grad, *(p.grad for _, p in sorted(model.namedparams())))


def test_forget_gives_the_same_gradients(every_kernel):
    for a, b in zip(_forget(True), _forget(False), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_function_hooks_and_graph_see_the_fast_convolution():
    from chainer import computational_graph, function_hooks

    np.random.seed(0)
    model = _Block()
    x = np.random.RandomState(5).randn(4, 3, 8, 8).astype(np.float32)
    with function_hooks.TimerHook() as timer:
        loss = F.sum(model(x))
        loss.backward()
    names = {name for name, _ in timer.call_history}  # the FunctionNodes' labels
    assert "FastConvolution2D" in names and "BatchNormalization" in names
    graph = computational_graph.build_computational_graph([loss]).dump()
    assert "FastConvolution2D" in graph


def test_float16_stays_on_chainers_convolution():
    x = np.random.randn(2, 3, 6, 6).astype(np.float16)
    W = np.random.randn(4, 3, 3, 3).astype(np.float16)
    with chainer.using_config("dtype", np.float16):
        y = F.convolution_2d(x, W, pad=1)
    assert not isinstance(y.creator, conv.FastConvolution2D)
    assert y.dtype == np.float16
