"""Paper 2, VGG: Table 1's configurations, Table 2's parameter counts, the CIFAR-10 head."""

from __future__ import annotations

import subprocess
import sys

import chainer
import numpy as np
import pytest

from chainer_nets import get_model, get_model_info
from chainer_nets.models.vgg import CONFIGS, VGG, receptive_field
from chainer_nets.registry import count_params

#: Weights and biases of the ImageNet networks (Table 2 prints them in millions).
IMAGENET = {
    "vgg11_imagenet": (132_863_336, "133"),
    "vgg11_lrn_imagenet": (132_863_336, "133"),
    "vgg13_imagenet": (133_047_848, "133"),
    "vgg16c_imagenet": (133_638_952, "134"),
    "vgg16_imagenet": (138_357_544, "138"),
    "vgg19_imagenet": (143_667_240, "144"),
}


@pytest.mark.parametrize("name", sorted(IMAGENET))
def test_imagenet_counts_equal_table2(name: str) -> None:
    info = get_model_info(name)
    n, printed = IMAGENET[name]
    assert count_params(info.build()) == n
    assert info.paper_params == printed and round(n / 1e6) == int(printed)
    assert info.dataset == "imagenet" and not info.params_mismatch


def test_cifar_counts() -> None:
    assert count_params(get_model("vgg11")) == 28_144_010
    assert count_params(get_model("vgg16")) == 33_638_218
    assert get_model_info("vgg11").dataset == "cifar10"


def test_weight_layers_per_configuration() -> None:
    """Table 1: 11, 11, 13, 16, 16, 19 weight layers (convolutions + 3 FC)."""
    depth = {k: sum(len(s) for s in v) + 3 for k, v in CONFIGS.items()}
    assert depth == {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}
    kernels_c = [k for s in CONFIGS["C"] for k, _ in s]
    assert kernels_c.count(1) == 3 and [s[-1][0] for s in CONFIGS["C"][2:]] == [1, 1, 1]
    assert all(k == 3 for c in "ABDE" for s in CONFIGS[c] for k, _ in s)


def test_cifar_adaptation_changes_only_the_head() -> None:
    """Same convolution stacks; the ImageNet head differs in FC1's inputs and FC3's outputs."""
    cifar, imagenet = VGG("D", head="cifar"), VGG("D", head="imagenet")
    conv_shapes = lambda m: [c.W.shape for c in m.features.convs]  # noqa: E731
    assert conv_shapes(cifar) == conv_shapes(imagenet)
    assert cifar.head.fc1.W.shape == (4096, 512) and imagenet.head.fc1.W.shape == (4096, 25088)
    assert cifar.head.fc2.W.shape == imagenet.head.fc2.W.shape == (4096, 4096)
    assert cifar.head.fc3.W.shape == (10, 4096) and imagenet.head.fc3.W.shape == (1000, 4096)


def test_stacked_3x3_arithmetic() -> None:
    assert [receptive_field(n) for n in (1, 2, 3)] == [3, 5, 7]
    assert 3 * 9 / 49 == pytest.approx(0.551, abs=1e-3)


def test_lrn_only_in_a_lrn() -> None:
    x = np.random.RandomState(0).rand(1, 3, 32, 32).astype(np.float32) * 50
    a, lrn = VGG("A"), VGG("A-LRN")
    lrn.copyparams(a)
    with chainer.using_config("train", False):
        assert not np.allclose(a.features(x).array, lrn.features(x).array)


@pytest.mark.parametrize("name", ["vgg11", "vgg16"])
def test_cifar_forward_backward(name: str) -> None:
    net = get_model(name)
    x = np.random.RandomState(1).randn(2, 3, 32, 32).astype(np.float32)
    y = net(x)
    assert y.shape == (2, 10)
    loss = chainer.functions.softmax_cross_entropy(y, np.array([0, 3], dtype=np.int32))
    net.cleargrads()
    loss.backward()
    assert all(p.grad is not None and np.isfinite(p.grad).all() for p in net.params())


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chainer_nets.train", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_imagenet_configuration_refused_by_train(tmp_path) -> None:
    out = tmp_path / "run"
    r = _cli("--model", "vgg16_imagenet", "--out", str(out), "--epochs", "1")
    assert r.returncode == 2
    assert r.stderr.count("error:") == 1
    assert "imagenet configuration" in r.stderr and "vgg16" in r.stderr
    assert not out.exists()


def test_list_marks_imagenet_configurations(monkeypatch: pytest.MonkeyPatch) -> None:
    from chainer_nets import train

    picked = [get_model_info("vgg11_imagenet"), get_model_info("nin")]
    monkeypatch.setattr(train, "list_models", lambda: picked)  # two models: build them only
    lines = {ln.split()[0]: ln for ln in train.format_model_list().splitlines()[1:] if ln.strip()}
    assert "[imagenet]" in lines["vgg11_imagenet"] and "[imagenet]" not in lines["nin"]


def test_glorot_init_range() -> None:
    """Glorot-uniform weights: U(-s, s), s = sqrt(6 / (fan_in + fan_out)); zero biases."""
    conv = VGG("A").features.convs[1]  # 64 -> 128, 3x3
    s = np.sqrt(6 / (64 * 9 + 128 * 9))
    w = conv.W.array
    assert w.min() >= -s and w.max() <= s and w.std() == pytest.approx(s / np.sqrt(3), rel=0.02)
    assert np.all(conv.b.array == 0)
