"""Tests for :mod:`chainer_nets.compat`: each fix is pinned by a test that fails without it."""

from __future__ import annotations  # noqa: I001  (chainer_nets must be imported before chainer)

import importlib
import sys
import warnings

import chainer_nets  # noqa: F401  (installs the compat layer first)
import numpy as np
import pytest

import chainer
import chainer.functions as F
import chainer.links as L
from chainer_nets import compat


@pytest.fixture
def strict_warnings():
    """Turn every warning into an error, like Chainer's own test configuration."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_numpy_namespace_not_touched() -> None:
    for name in ("sctypes", "float", "int", "object", "product", "float_", "NaN"):
        assert name not in dir(np), name
    assert not hasattr(np, "sctypes")
    with pytest.raises(AttributeError):
        np.float  # noqa: B018
    assert not hasattr(np, "distutils")


def test_every_listed_module_is_loaded_with_its_fixes() -> None:
    for name in compat.SOURCE_FIXES:
        module = importlib.import_module(name)
        assert isinstance(module.__spec__.loader, compat._FixingLoader), name


def test_missing_text_fails_loudly() -> None:
    with pytest.raises(compat.CompatError, match="expected text"):
        compat.apply_fixes("m", "x = 1\n", [("y = 2", "y = 3")])
    assert compat.apply_fixes("m", "a b a", [("a", "c")]) == "c b c"


def test_environment_check_uses_the_shim() -> None:
    # numpy.distutils and pkg_resources (setuptools >= 82) are gone.
    env_check = sys.modules["chainer._environment_check"]
    assert env_check.pkg_resources is compat.pkg_resources_shim
    env_check._check_osx_numpy_backend()
    shim = compat.pkg_resources_shim
    assert shim.get_distribution("numpy").version == np.__version__
    shim.require("numpy>=1.9")
    with pytest.raises(shim.VersionConflict):
        shim.require("numpy<1")
    with pytest.raises(shim.DistributionNotFound):
        shim.require("surely-not-an-installed-distribution")


def test_testing_helpers_use_the_shim() -> None:
    from chainer.testing import doctest_helper, helper

    assert helper.pkg_resources is compat.pkg_resources_shim
    assert doctest_helper.pkg_resources is compat.pkg_resources_shim

    @chainer.testing.with_requires("numpy>=1.9")
    def needs_numpy() -> str:
        return "ran"

    assert needs_numpy() == "ran"


def test_as_strided_forward_backward() -> None:
    # np.sctypes (import time and in backward) was removed in NumPy 2.0.
    x = chainer.Variable(np.arange(6, dtype=np.float32))
    y = F.as_strided(x, (2, 3), (2, 1))
    np.testing.assert_array_equal(y.array, [[0, 1, 2], [2, 3, 4]])
    F.sum(y).backward()
    np.testing.assert_array_equal(x.grad, [1, 1, 2, 1, 1, 0])


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_resize_images(mode: str, align_corners: bool) -> None:
    # numpy.float was removed in NumPy 1.24.
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    y = F.resize_images(x, (2, 2), mode=mode, align_corners=align_corners)
    assert y.shape == (1, 1, 2, 2)
    expected = 2.5 if (mode, align_corners) == ("bilinear", False) else 0.0
    assert y.array[0, 0, 0, 0] == expected


def test_pad_sequence_negative_padding_wraps_like_numpy_1(strict_warnings) -> None:
    # NEP 50: assigning Python int -1 to a uint8 array raises OverflowError.
    xs = [np.array([1, 2], np.uint8), np.array([3], np.uint8)]
    y = F.pad_sequence(xs, padding=-1)
    assert y.dtype == np.uint8
    np.testing.assert_array_equal(y.array, [[1, 2], [3, 255]])
    y = F.pad_sequence([np.array([0.5], np.float16), np.zeros(2, np.float16)], padding=-1.5)
    np.testing.assert_array_equal(y.array, np.array([[0.5, -1.5], [0, 0]], np.float16))


def test_concat_examples_padding(strict_warnings) -> None:
    # np.maximum(a, b, out) with out positional is deprecated (NumPy 2.4); NEP 50 padding.
    batch = [np.array([1, 2], np.uint8), np.array([3], np.uint8)]
    y = chainer.dataset.concat_examples(batch, padding=-1)
    assert y.dtype == np.uint8
    np.testing.assert_array_equal(y, [[1, 2], [3, 255]])


def test_maxout_callable_initializers_see_the_3d_shape(strict_warnings) -> None:
    # Setting ndarray.shape in place is deprecated in NumPy 2.5.
    seen = []

    def init_w(array: np.ndarray) -> None:
        seen.append(array.shape)
        array[...] = np.arange(array.size, dtype=array.dtype).reshape(array.shape)

    def init_b(array: np.ndarray) -> None:
        seen.append(array.shape)
        array[...] = 7

    link = L.Maxout(4, 3, 2, initialW=init_w, initial_bias=init_b)
    assert seen == [(3, 2, 4), (3, 2)]
    np.testing.assert_array_equal(link.linear.W.array.ravel(), np.arange(24))
    assert link.linear.W.shape == (6, 4)
    np.testing.assert_array_equal(link.linear.b.array, np.full(6, 7, np.float32))


def test_debug_print_names_the_cpu() -> None:
    # NumPy 2 arrays have a ``device`` attribute ("cpu").
    assert "- device: CPU\n" in chainer.Variable(np.zeros(2, np.float32)).debug_print()


def test_multiprocess_iterator_thread_without_set_daemon(strict_warnings) -> None:
    # Thread.setDaemon() is deprecated since Python 3.10.
    it = chainer.iterators.MultiprocessIterator(
        list(range(4)), 2, repeat=False, shuffle=False, n_processes=1, shared_mem=1000
    )
    try:
        assert it.next() == [0, 1]
        assert it._prefetch_loop.thread.daemon
    finally:
        it.finalize()


def test_hdf5_string_comes_back_as_str(tmp_path) -> None:
    # h5py 3 returns bytes for string datasets.
    h5py = pytest.importorskip("h5py")
    from chainer.serializers import hdf5

    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("s", data="abc")
    with h5py.File(path, "r") as f:
        assert hdf5.HDF5Deserializer(f)("s", "") == "abc"


@pytest.mark.parametrize("zero_dim", [False, True])
def test_summary_accumulates_in_float64(zero_dim) -> None:
    # NEP 50: the sums start at the Python float 0.0, which no longer promotes float32 values;
    # NumPy 1 summed in float64. In float32 the std of these 20,000 values came out 0.8% low.
    rng = np.random.RandomState(0)
    values = (rng.randn(20000) * 0.05 + 2.3).astype(np.float32)
    summary = chainer.reporter.Summary()
    dict_summary = chainer.reporter.DictSummary()
    for v in values:
        v = np.asarray(v) if zero_dim else v  # a loss's .array is 0-d, float(...) a scalar
        summary.add(v)
        dict_summary.add({"main/loss": v})
    ref = values.astype(np.float64)
    mean, std = summary.make_statistics()
    assert mean.dtype == np.float64 and std.dtype == np.float64
    np.testing.assert_allclose(mean, ref.mean(), rtol=1e-12)
    np.testing.assert_allclose(std, ref.std(), rtol=1e-9)
    np.testing.assert_allclose(summary.compute_mean(), ref.mean(), rtol=1e-12)
    np.testing.assert_allclose(dict_summary.compute_mean()["main/loss"], ref.mean(), rtol=1e-12)
    stats = dict_summary.make_statistics()
    np.testing.assert_allclose(stats["main/loss.std"], ref.std(), rtol=1e-9)


def test_micro_average_sums_in_float64() -> None:
    # NEP 50: MicroAverage's sums start at the int 0, which no longer promotes float32.
    from types import SimpleNamespace

    from chainer.training import extensions

    values = np.random.RandomState(1).rand(20000).astype(np.float32)
    ext = extensions.MicroAverage("n", "d", "ratio", trigger=lambda trainer: trainer.last)
    reporter = chainer.Reporter()
    observation: dict = {}
    for i, v in enumerate(values):
        trainer = SimpleNamespace(observation={"n": v, "d": np.float32(1)}, last=i == 19999)
        with reporter.scope(observation):
            ext(trainer)
    np.testing.assert_allclose(observation["ratio"], values.astype(np.float64).mean(), rtol=1e-12)


def test_gradient_clipping_sums_the_norms_in_float64() -> None:
    # NEP 50: the squared norms of the gradients are summed by sum() from the int 0; in
    # float32 the small gradients vanish next to a large one.
    chain = chainer.ChainList(*[L.Bias(shape=(4,)) for _ in range(1000)])
    rng = np.random.RandomState(2)
    for i, p in enumerate(chain.params()):
        p.grad = (rng.rand(4) * (500.0 if i == 0 else 0.05)).astype(np.float32)
    grads = [p.grad.copy() for p in chain.params()]
    opt = chainer.optimizers.SGD(lr=0.0)
    opt.setup(chain)
    opt.add_hook(chainer.optimizer_hooks.GradientClipping(1.0))
    opt.update()
    norm = np.sqrt(sum(float(np.dot(g.astype(np.float64), g.astype(np.float64))) for g in grads))
    for g, p in zip(grads, chain.params(), strict=True):
        np.testing.assert_allclose(p.grad, g * (1.0 / norm), rtol=2e-7)
