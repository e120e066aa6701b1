"""NAS (paper 22): the appendix network, the paper's wiring rules, the controller, REINFORCE."""

from __future__ import annotations

import chainer
import chainer.functions as F
import numpy as np
import pytest
from cpu_fast_support import assert_fast_path_matches_default

import chainer_nets  # noqa: F401  (applies the compat layer)
from chainer_nets.models import nas as ns
from chainer_nets.models.nas import (
    APPENDIX_A,
    APPENDIX_A_2016,
    NasLayer,
    NasNet,
    concat_padded,
    unconnected,
)
from chainer_nets.recipes import get_recipe
from chainer_nets.registry import count_params, get_model_info

# name: (all parameters, conv/linear weights only)
EXACT = {"nas_appendix_a": (4_201_630, 4_200_348), "nas_appendix_a_2016": (4_121_626, 4_119_708)}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_counts(name: str) -> None:
    info = get_model_info(name)
    net = info.build()
    assert (count_params(net), count_params(net, "weights")) == EXACT[name]
    assert info.paper_params == "4.2" and info.recipe == "nas"
    # the paper's network has the paper's 4.2M; the 2016 reading is 80,640 weights short
    assert round(EXACT["nas_appendix_a"][0] / 1e6, 1) == 4.2
    assert round(EXACT["nas_appendix_a_2016"][0] / 1e6, 1) == 4.1
    assert bool(info.params_mismatch) == (name == "nas_appendix_a_2016")


def test_appendix_figure_layers() -> None:
    sizes = [(la.fh, la.fw) for la in APPENDIX_A]
    assert sizes == [
        (3, 3), (3, 3), (3, 3), (5, 5), (3, 7), (7, 7), (7, 7), (7, 3),
        (7, 1), (7, 7), (5, 7), (7, 7), (7, 5), (7, 5), (7, 5),
    ]  # fmt: skip
    filters = [36, 48, 36, 36, 48, 48, 48, 36, 36, 36, 36, 48, 48, 48, 48]
    assert [la.n for la in APPENDIX_A] == filters
    assert all(i - 1 in la.inputs for i, la in enumerate(APPENDIX_A) if i)  # reads predecessor
    assert APPENDIX_A[0].inputs == () and unconnected(APPENDIX_A) == [14]
    # 14 one-step connections and 51 longer skip connections
    assert sum(len(la.inputs) for la in APPENDIX_A) == 65
    # the 2016 reading differs in one place only: layer 14 (0-based) does not read layer 5
    assert APPENDIX_A_2016[:-1] == APPENDIX_A[:-1]
    assert set(APPENDIX_A[-1].inputs) - set(APPENDIX_A_2016[-1].inputs) == {5}
    net = get_model_info("nas_appendix_a").build()
    widths = [c.conv.W.shape[1] for c in net.convs]
    assert widths[0] == 3 and widths[14] == 48 * 5 + 36  # image; concat of 6 layers
    assert net.head.fc.W.shape == (10, 48)  # only layer 14 is unconnected


def test_same_padding_keeps_32x32_and_2016_net_shrinks() -> None:
    x = np.random.RandomState(0).randn(2, 3, 32, 32).astype(np.float32)
    with chainer.using_config("train", False):
        outs = get_model_info("nas_appendix_a").build().features(x)
        assert all(o.shape[2:] == (32, 32) for o in outs)
        net16 = get_model_info("nas_appendix_a_2016").build()
        outs16 = net16.features(x)
        y = net16(x)
    # no padding: a layer's output is its (zero-padded) input minus the filter size plus one
    assert outs16[0].shape[2:] == (30, 30) and outs16[1].shape[2:] == (28, 28)
    assert outs16[4].shape[2:] == (26, 22)  # 3x7 filter on the 28x28 concat of layers 2, 3
    assert y.shape == (2, 10) and np.isfinite(y.array).all()
    assert net16.convs[0].order == "conv_relu_bn" and net16.convs[0].conv.b is not None


def test_concat_zero_pads_bottom_right() -> None:
    a = np.ones((1, 2, 4, 4), np.float32)
    b = 2 * np.ones((1, 3, 2, 3), np.float32)
    y = concat_padded([chainer.Variable(a), chainer.Variable(b)]).array
    assert y.shape == (1, 5, 4, 4)
    np.testing.assert_array_equal(y[:, :2], a)
    np.testing.assert_array_equal(y[:, 2:, :2, :3], b[:, :, :, :])
    assert (y[:, 2:, 2:, :] == 0).all() and (y[:, 2:, :, 3:] == 0).all()


def test_paper_rules_image_input_unconnected_outputs_and_strides() -> None:
    layers = [
        NasLayer(3, 3, 8),
        NasLayer(3, 1, 6, (0,), stride=2),  # 16x16
        NasLayer(1, 3, 5, (0, 1)),  # reads a 32x32 and a zero-padded 16x16 map
        NasLayer(5, 5, 4),  # no input: takes the image
    ]
    np.random.seed(1)
    net = NasNet(layers)
    assert unconnected(layers) == [2, 3]
    assert net.convs[3].conv.W.shape[1] == 3 and net.convs[2].conv.W.shape[1] == 14
    assert net.head.fc.W.shape == (10, 9)  # layers 2 and 3 concatenated at the end
    x = np.random.RandomState(2).randn(2, 3, 32, 32).astype(np.float32)
    with chainer.using_config("train", True):
        outs = net.features(x)
        loss = F.softmax_cross_entropy(net(x), np.array([1, 2], np.int32))
    assert [o.shape[2:] for o in outs] == [(32, 32), (16, 16), (32, 32), (32, 32)]
    net.cleargrads()
    loss.backward()
    assert all(p.grad is not None and np.isfinite(p.grad).all() for p in net.params())


@pytest.mark.parametrize(
    "layers, match",
    [
        ([], "at least one layer"),
        ([NasLayer(3, 3, 8, (0,))], "only earlier layers"),
        ([NasLayer(3, 3, 8), NasLayer(3, 3, 8, (0, 0))], "twice"),
        ([NasLayer(0, 3, 8)], "positive"),
    ],
)
def test_bad_descriptions(layers: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NasNet(layers)


def test_recipe() -> None:
    r = get_recipe("nas")
    assert (r.optimizer, r.momentum, r.lr, r.weight_decay) == ("nesterov", 0.9, 0.1, 1e-4)
    assert r.departures and any("grid search" in d for d in r.departures)


def test_cpu_fast_path_matches_chainer_default() -> None:
    """Rectangular filters and padded concatenations: same loss and gradients either way."""
    layers = [NasLayer(3, 7, 6), NasLayer(7, 1, 5, (0,), 2), NasLayer(5, 3, 4, (0, 1))]
    np.random.seed(3)
    net = NasNet(layers)
    x = np.random.RandomState(4).randn(2, 3, 16, 16).astype(np.float32)
    t = np.array([3, 7], np.int32)
    assert_fast_path_matches_default(net, x, t)


# --- the controller and REINFORCE ------------------------------------------------------------

TINY = ns.SearchSpace(n_layers=2, heights=(1, 3), widths=(1, 3), filters=(24, 36))


def test_sampled_architectures_are_valid_and_buildable() -> None:
    space = ns.SearchSpace(n_layers=4)
    np.random.seed(0)
    controller = ns.Controller(space)
    rng = np.random.default_rng(0)
    x = np.random.RandomState(0).randn(2, 3, 16, 16).astype(np.float32)
    seen_skips = set()
    for _ in range(12):
        layers = controller.sample(rng).layers
        assert len(layers) == 4
        for i, la in enumerate(layers):
            assert la.fh in space.heights and la.fw in space.widths and la.n in space.filters
            assert all(0 <= j < i for j in la.inputs) and la.stride == 1
            seen_skips.add(la.inputs)
        with chainer.using_config("train", False):
            assert NasNet(layers)(x).shape == (2, 10)
    assert len(seen_skips) > 3  # connections are really sampled, not fixed


def test_log_probs_sum_over_decisions_and_normalise() -> None:
    np.random.seed(1)
    controller = ns.Controller(TINY)
    sample = controller.sample(np.random.default_rng(5))
    kinds = [d[0] for d in sample.decisions]
    assert kinds == ["fh", "fw", "n", "inputs", "fh", "fw", "n"]
    total = float(sample.log_prob.array)
    assert total == pytest.approx(sum(d[2] for d in sample.decisions), abs=1e-5)
    assert total == pytest.approx(float(controller.log_prob(sample.layers).array), abs=1e-5)
    # a distribution: the probabilities of all 8 * 8 * 2 architectures add up to one
    archs = list(TINY.all_architectures())
    assert len(archs) == 128
    p = sum(float(np.exp(controller.log_prob(a).array)) for a in archs)
    assert p == pytest.approx(1.0, abs=1e-4)


def _p_first_height(controller: ns.Controller, fh: int) -> float:
    layers = controller.sample(np.random.default_rng(0)).layers
    layers = (layers[0]._replace(fh=fh),) + layers[1:]
    first = controller.run(layers=layers).decisions[0]
    assert first[:2] == ("fh", fh)
    return float(np.exp(first[2]))


@pytest.mark.parametrize("rewarded", [True, False])
def test_reinforce_moves_policy_toward_rewarded_choice(rewarded: bool) -> None:
    """Reward 1 when layer 0's filter height is 3 (or, the control, when it is not)."""
    space = ns.SearchSpace(n_layers=2)
    np.random.seed(2)
    controller = ns.Controller(space)
    before = _p_first_height(controller, 3)
    assert 0.15 < before < 0.35  # near uniform over four heights at initialisation

    def toy(layers: tuple) -> float:
        return float((layers[0].fh == 3) == rewarded)

    history = ns.search(space, toy, steps=25, per_step=4, lr=0.02, seed=2, controller=controller)
    after = _p_first_height(controller, 3)
    if rewarded:
        assert after > 0.8 and np.mean(history[-1].rewards) > np.mean(history[0].rewards)
    else:
        assert after < 0.05


def test_baseline_is_a_moving_average_of_rewards() -> None:
    np.random.seed(3)
    controller = ns.Controller(TINY)
    algo = ns.Reinforce(controller, baseline_decay=0.5)
    rng = np.random.default_rng(0)
    s = [controller.sample(rng) for _ in range(2)]
    assert algo.update(s, [0.2, 0.4]) == pytest.approx(0.3)  # first: the batch mean
    assert algo.baseline == pytest.approx(0.5 * (0.5 * 0.3 + 0.5 * 0.2) + 0.5 * 0.4)
    used = algo.baseline
    assert algo.update(s[:1], [1.0]) == pytest.approx(used)
    assert algo.baseline == pytest.approx(0.5 * used + 0.5)
    with pytest.raises(ValueError, match="one reward per sample"):
        algo.update(s, [1.0])


def test_child_reward_on_a_class_mixed_subset() -> None:
    data = ns.child_data(96, 60, image_size=8)
    assert data.train_x.shape == (96, 3, 8, 8) and data.val_x.shape == (60, 3, 8, 8)
    assert len(np.unique(data.train_y)) == 10  # the cache is sorted by class; the subset is not
    assert abs(float(data.train_x.mean())) < 1e-3
    layers = (NasLayer(3, 3, 24), NasLayer(1, 3, 24, (0,)))
    acc = ns.train_child(layers, data, epochs=1, batch_size=32, seed=0)
    assert 0.0 <= acc <= 1.0 and acc * 60 == pytest.approx(round(acc * 60))
    assert ns.train_child(layers, data, epochs=1, batch_size=32, seed=0) == acc  # reproducible
    with pytest.raises(ValueError, match="divide 32"):
        ns.child_data(10, 10, image_size=10)
