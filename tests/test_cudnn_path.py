"""The optional cuDNN convolution path: what can be checked without a GPU.

The graphs themselves run only on a GPU (``benchmarks/gpu`` checks them against NumPy there);
here: the switch, the fallback to Chainer's path, and the tensor descriptions.
"""

from __future__ import annotations

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
import pytest

import chainer_nets  # noqa: F401  (compat layer before chainer)
from chainer_nets import cudnn_path


@pytest.fixture
def installed():
    """The path installed (switched on), then removed again."""
    cudnn_path.install(default=True)
    yield
    cudnn_path.uninstall()


def test_env_setting() -> None:
    """CHAINER_NETS_CUDNN: 0/1/auto; unset means off while the path is unverified."""
    assert cudnn_path.setting_from_env(None) is False
    assert cudnn_path.setting_from_env("1") is True
    assert cudnn_path.setting_from_env("off") is False
    assert cudnn_path.setting_from_env("auto") is None
    with pytest.raises(ValueError, match="CHAINER_NETS_CUDNN"):
        cudnn_path.setting_from_env("sometimes")


def test_default_install_is_off(monkeypatch) -> None:
    """Without the variable the path is installed switched off; auto follows availability."""
    monkeypatch.delenv(cudnn_path.ENV, raising=False)
    try:
        assert cudnn_path.install() is False
        assert not cudnn_path.is_enabled()
        monkeypatch.setenv(cudnn_path.ENV, "auto")
        assert cudnn_path.install() is cudnn_path.available()
    finally:
        cudnn_path.uninstall()


def test_numpy_arrays_keep_the_previous_path(installed) -> None:
    """Switched on, NumPy convolutions still go to the function that was there before."""
    rng = np.random.RandomState(0)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    link = L.Convolution2D(3, 4, 3, pad=1)

    def step() -> tuple[np.ndarray, np.ndarray]:
        link.cleargrads()
        y = link(x)
        y.grad = np.ones_like(y.array)
        y.backward()
        return y.array.copy(), link.W.grad.copy()

    with cudnn_path.enabled(True):
        y1, g1 = step()
    cudnn_path.uninstall()
    y2, g2 = step()
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(g1, g2)


def test_install_wraps_and_uninstall_restores() -> None:
    """``chainer.functions.convolution_2d`` is wrapped and restored."""
    before = F.convolution_2d
    cudnn_path.install(default=False)
    assert F.convolution_2d is cudnn_path.convolution_2d
    cudnn_path.uninstall()
    assert F.convolution_2d is before


def test_tensor_descriptions() -> None:
    """Strides in elements, dense NCHW or NHWC detection, output sizes."""
    a = np.zeros((2, 3, 4, 5), np.float32)
    assert cudnn_path.element_strides(a.strides, a.itemsize) == [60, 20, 5, 1]
    nhwc = np.zeros((2, 4, 5, 3), np.float16).transpose(0, 3, 1, 2)
    s = cudnn_path.element_strides(nhwc.strides, nhwc.itemsize)
    assert s == cudnn_path.nhwc_strides(nhwc.shape) == [60, 1, 15, 3]
    assert cudnn_path.is_packed(a.shape, [60, 20, 5, 1]) and cudnn_path.is_packed(nhwc.shape, s)
    sliced = a[:, :, :, ::2]
    assert not cudnn_path.is_packed(sliced.shape, cudnn_path.element_strides(sliced.strides, 4))
    assert cudnn_path.conv_out_size(32, 3, 1, 1) == 32
    assert cudnn_path.conv_out_size(32, 3, 2, 1) == 16
    assert cudnn_path.conv_out_size(32, 1, 2, 0) == 16


def test_supported_calls() -> None:
    """float16/float32 2-D convolutions without dilation or cover_all; groups by W's shape."""
    x = np.zeros((2, 8, 4, 4), np.float32)
    assert cudnn_path.supported(x, np.zeros((4, 8, 3, 3), np.float32), 1, 1, False) is None
    assert cudnn_path.supported(x, np.zeros((4, 2, 3, 3), np.float32), 1, 4, False) is None
    assert "dtype" in cudnn_path.supported(x.astype(np.float64), x.astype(np.float64), 1, 1, False)
    assert cudnn_path.supported(x, np.zeros((4, 8, 3, 3), np.float32), 2, 1, False) == "dilation"
    assert cudnn_path.supported(x, np.zeros((4, 8, 3, 3), np.float32), 1, 1, True) == "cover_all"
    assert cudnn_path.supported(x, np.zeros((4, 3, 3, 3), np.float32), 1, 1, False) == "channels"


def test_config_switch_is_scoped() -> None:
    """``enabled`` sets chainer.config.cudnn_frontend inside the block only."""
    cudnn_path.install(default=False)
    try:
        with cudnn_path.enabled(True):
            assert chainer.config.cudnn_frontend is True
        assert chainer.config.cudnn_frontend is False
    finally:
        cudnn_path.uninstall()
