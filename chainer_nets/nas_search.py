r"""The architecture search of Zoph & Le (arXiv 1611.01578) in miniature: an LSTM controller
samples child networks, and REINFORCE with a moving-average baseline trains it on the
children's validation accuracies.

**The controller** is a recurrent network that emits a child network one decision at a time;
each decision is fed back as the next step's input. For every layer :math:`i` it first runs an
*anchor* step, whose hidden state :math:`\mathbf{h}_i` decides which earlier layers feed layer
:math:`i`, each independently, by an attention-like sigmoid over the earlier anchors:

.. math::  P(\text{layer } j \text{ is an input to layer } i) =
           \sigma\big(\mathbf{v}^\top \tanh(W_{prev}\,\mathbf{h}_j + W_{curr}\,\mathbf{h}_i)\big),
           \qquad j < i,

then three softmax steps choose the filter height in {1, 3, 5, 7}, the filter width in
{1, 3, 5, 7} and the number of filters in {24, 36, 48, 64}. The probability of a whole
architecture :math:`a_{1:T}` is the product of its decisions' probabilities,
:math:`\log P(a_{1:T}) = \sum_t \log P(a_t \mid a_{1:t-1})`.

**REINFORCE.** With :math:`m` architectures sampled per update, rewards :math:`R_k` (their
validation accuracies) and a baseline :math:`b`, the controller's parameters :math:`\theta_c`
follow

.. math::  \nabla_{\theta_c} J \approx \frac{1}{m}\sum_{k=1}^{m}\sum_{t=1}^{T}
           \nabla_{\theta_c}\log P(a_t \mid a_{1:t-1};\theta_c)\,(R_k - b),

where :math:`b` is an exponential moving average of the previous rewards, which lowers the
variance of the estimate without biasing it.

**What the paper did, and what the miniature keeps.** The paper's controller is a two-layer
LSTM with 35 units per layer, initialised uniformly in [-0.08, 0.08] and trained with Adam at
learning rate 0.0006; 800 child networks trained at once on 800 GPUs, each for 50 epochs on
45,000 images, and the reward was the maximum validation accuracy (5,000 held-out training
images) of the last 5 epochs, cubed; the depth of the children grew by 2 every 1,600 samples,
from 6 layers; 12,800 architectures in all. The miniature keeps the controller (two LSTM layers
of 35 units, the same initialisation, Adam), the search space and the REINFORCE update with its
baseline, and shrinks everything else so that it runs in minutes on a CPU: children of a few
layers, trained for about one epoch on a few hundred 16x16 (average-pooled) images, rewarded
with their plain validation accuracy on a few hundred held-out training images. The paper does
not say where in a layer's decisions the anchor step sits, nor what is fed back after it; here
it comes first and the next step reads a learned anchor embedding.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
from chainer import initializers

from chainer_nets.models.nas import NasLayer, NasNet


@dataclass(frozen=True)
class SearchSpace:
    """The per-layer choices of the paper's CIFAR-10 search (strides fixed to 1)."""

    n_layers: int = 3
    heights: tuple[int, ...] = (1, 3, 5, 7)
    widths: tuple[int, ...] = (1, 3, 5, 7)
    filters: tuple[int, ...] = (24, 36, 48, 64)

    def __post_init__(self) -> None:
        if self.n_layers < 1 or not (self.heights and self.widths and self.filters):
            raise ValueError(f"a search space needs layers and choices, got {self}")

    def all_architectures(self) -> Iterator[tuple[NasLayer, ...]]:
        """Every architecture of the space (only sensible for tiny spaces; for checking)."""
        per_layer = list(itertools.product(self.heights, self.widths, self.filters))
        skip_sets = [
            [tuple(j for j in range(i) if mask >> j & 1) for mask in range(2**i)]
            for i in range(self.n_layers)
        ]
        for convs in itertools.product(per_layer, repeat=self.n_layers):
            for skips in itertools.product(*skip_sets):
                yield tuple(
                    NasLayer(fh, fw, n, s) for (fh, fw, n), s in zip(convs, skips, strict=True)
                )


@dataclass
class Sample:
    """One sampled architecture, its log-probability (a Variable) and each decision's."""

    layers: tuple[NasLayer, ...]
    log_prob: chainer.Variable
    decisions: list[tuple[str, object, float]] = field(default_factory=list)


class Controller(chainer.Chain):
    """Two-layer LSTM controller that emits a child network decision by decision."""

    def __init__(self, space: SearchSpace, hidden: int = 35, init_range: float = 0.08) -> None:
        super().__init__()
        self.space = space
        self.hidden = hidden
        self.choices = {"fh": space.heights, "fw": space.widths, "n": space.filters}
        init = initializers.Uniform(init_range)
        # input tokens: start, anchor, then every choice of every decision
        self.token = {"start": 0, "anchor": 1}
        for kind, values in self.choices.items():
            for v in values:
                self.token[(kind, v)] = len(self.token)
        with self.init_scope():
            self.embed = L.EmbedID(len(self.token), hidden, initialW=init)
            self.lstm1 = L.StatelessLSTM(hidden, hidden, lateral_init=init, upward_init=init)
            self.lstm2 = L.StatelessLSTM(hidden, hidden, lateral_init=init, upward_init=init)
            self.heads = chainer.ChainList(
                *[L.Linear(hidden, len(v), initialW=init) for v in self.choices.values()]
            )
            self.w_prev = L.Linear(hidden, hidden, nobias=True, initialW=init)
            self.w_curr = L.Linear(hidden, hidden, nobias=True, initialW=init)
            self.v = L.Linear(hidden, 1, nobias=True, initialW=init)

    def _step(self, token: int, state: list) -> chainer.Variable:
        x = self.embed(self.xp.array([token], np.int32))
        c1, h1 = self.lstm1(state[0], state[1], x)
        c2, h2 = self.lstm2(state[2], state[3], h1)
        state[:] = [c1, h1, c2, h2]
        return h2

    def skip_logits(self, anchors: list[chainer.Variable], h: chainer.Variable):
        r""":math:`\mathbf{v}^\top\tanh(W_{prev}\mathbf{h}_j + W_{curr}\mathbf{h}_i)` for every
        earlier anchor :math:`j` (shape ``(i,)``); its sigmoid is :math:`P(j \to i)`."""
        prev = self.w_prev(F.concat(anchors, axis=0))  # (i, hidden)
        curr = F.broadcast_to(self.w_curr(h), prev.shape)
        return F.reshape(self.v(F.tanh(prev + curr)), (len(anchors),))

    def run(
        self, rng: np.random.Generator | None = None, layers: Sequence[NasLayer] | None = None
    ) -> Sample:
        """Sample an architecture with ``rng``, or score the given ``layers`` (teacher forcing):
        the architecture, its log-probability and every decision's log-probability."""
        if (rng is None) == (layers is None):
            raise ValueError("give exactly one of rng (to sample) or layers (to score)")
        if layers is not None and len(layers) != self.space.n_layers:
            raise ValueError(f"expected {self.space.n_layers} layers, got {len(layers)}")
        zero = self.xp.zeros((1, self.hidden), np.float32)
        state = [zero, zero, zero, zero]
        token = self.token["start"]
        anchors: list[chainer.Variable] = []
        terms: list[chainer.Variable] = []
        decisions: list[tuple[str, object, float]] = []
        out: list[NasLayer] = []
        for i in range(self.space.n_layers):
            h = self._step(token, state)  # anchor step of layer i
            inputs: tuple[int, ...] = ()
            if i > 0:
                z = self.skip_logits(anchors, h)
                if layers is None:
                    p = 1.0 / (1.0 + np.exp(-chainer.backend.CpuDevice().send(z.array)))
                    chosen = rng.random(i) < p
                else:
                    chosen = np.isin(np.arange(i), layers[i].inputs)
                sign = self.xp.asarray(np.where(chosen, 1.0, -1.0).astype(np.float32))
                lp = -F.sum(F.softplus(-sign * z))  # log sigmoid(z) if chosen, log sigmoid(-z) else
                terms.append(lp)
                inputs = tuple(int(j) for j in np.flatnonzero(chosen))
                decisions.append(("inputs", inputs, float(lp.array)))
            anchors.append(h)
            token = self.token["anchor"]
            picked = {}
            for (kind, values), head in zip(self.choices.items(), self.heads, strict=True):
                h = self._step(token, state)
                logp = F.log_softmax(head(h))[0]
                if layers is None:
                    probs = np.exp(chainer.backend.CpuDevice().send(logp.array).astype(np.float64))
                    k = int(rng.choice(len(values), p=probs / probs.sum()))
                else:
                    k = values.index(getattr(layers[i], kind))
                terms.append(logp[k])
                decisions.append((kind, values[k], float(logp.array[k])))
                picked[kind] = values[k]
                token = self.token[(kind, values[k])]
            out.append(NasLayer(picked["fh"], picked["fw"], picked["n"], inputs))
        return Sample(tuple(out), F.sum(F.stack(terms)), decisions)

    def sample(self, rng: np.random.Generator) -> Sample:
        """Draw one architecture from the controller's distribution."""
        return self.run(rng=rng)

    def log_prob(self, layers: Sequence[NasLayer]) -> chainer.Variable:
        """:math:`\\log P(a_{1:T})` of a given architecture."""
        return self.run(layers=layers).log_prob


class Reinforce:
    """REINFORCE for the controller with an exponential-moving-average reward baseline."""

    def __init__(
        self, controller: Controller, lr: float = 6e-4, baseline_decay: float = 0.9
    ) -> None:
        self.controller = controller
        self.optimizer = chainer.optimizers.Adam(alpha=lr)
        self.optimizer.setup(controller)
        self.decay = baseline_decay
        self.baseline: float | None = None

    def update(self, samples: Sequence[Sample], rewards: Sequence[float]) -> float:
        r"""One step on :math:`-\frac1m\sum_k (R_k - b)\log P(a^k)`, then the baseline moves
        towards the rewards, one architecture at a time; returns the baseline used."""
        if len(samples) != len(rewards) or not samples:
            raise ValueError("need one reward per sample, and at least one sample")
        if self.baseline is None:  # no previous rewards yet: start from this batch's mean
            self.baseline = float(np.mean(rewards))
        b = self.baseline
        loss = -sum((r - b) * s.log_prob for s, r in zip(samples, rewards, strict=True)) / len(
            samples
        )
        self.controller.cleargrads()
        loss.backward()
        self.optimizer.update()
        for r in rewards:
            self.baseline = self.decay * self.baseline + (1 - self.decay) * float(r)
        return b


# ---------------------------------------------------------------------------------------------
# Child networks: trained very briefly on a small CIFAR-10 subset, rewarded with validation
# accuracy.


@dataclass(frozen=True)
class ChildData:
    """Normalised float32 images and int32 labels for child training and validation."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray


def child_data(
    train_images: int, val_images: int, image_size: int = 16, data_dir: str | None = None
) -> ChildData:
    """A fixed class-mixed subset of CIFAR-10's training set for training children, and a
    disjoint held-out part of the training set for their rewards (never the test set);
    images average-pooled to ``image_size`` and normalised per channel."""
    from chainer_nets.data import load_cifar10, split_validation, take_subset

    if 32 % image_size:
        raise ValueError(f"image_size must divide 32, got {image_size}")
    data = load_cifar10(data_dir)
    (tx, ty), (vx, vy) = split_validation(data, 5000)  # the paper's 5,000 held-out images
    tx, ty = take_subset(tx, ty, train_images)
    vx, vy = take_subset(vx, vy, val_images)
    f = 32 // image_size

    def prep(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32).reshape(len(x), 3, image_size, f, image_size, f)
        return x.mean(axis=(3, 5))

    tx, vx = prep(tx), prep(vx)
    mean = tx.mean(axis=(0, 2, 3), keepdims=True)
    std = tx.std(axis=(0, 2, 3), keepdims=True)
    return ChildData((tx - mean) / std, ty.astype(np.int32), (vx - mean) / std, vy.astype(np.int32))


def train_child(
    layers: Sequence[NasLayer],
    data: ChildData,
    epochs: int = 1,
    batch_size: int = 32,
    lr: float = 0.05,
    seed: int = 0,
) -> float:
    """Validation accuracy (fraction) of the child ``layers`` after ``epochs`` of Nesterov SGD
    (momentum 0.9, weight decay 1e-4, the paper's child settings, lr scaled down) from a fixed
    initialisation and image order."""
    np.random.seed(seed)
    net = NasNet(layers)
    opt = chainer.optimizers.NesterovAG(lr=lr, momentum=0.9)
    opt.setup(net)
    opt.add_hook(chainer.optimizer_hooks.WeightDecay(1e-4))
    rng = np.random.default_rng(seed)
    n = len(data.train_x)
    with chainer.using_config("train", True):
        for _ in range(epochs):
            order = rng.permutation(n)
            for s in range(0, n - batch_size + 1, batch_size):
                idx = order[s : s + batch_size]
                loss = F.softmax_cross_entropy(net(data.train_x[idx]), data.train_y[idx])
                net.cleargrads()
                loss.backward()
                opt.update()
    correct = 0
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        for s in range(0, len(data.val_x), 256):
            y = net(data.val_x[s : s + 256]).array
            correct += int((y.argmax(axis=1) == data.val_y[s : s + 256]).sum())
    return correct / len(data.val_x)


@dataclass
class SearchStep:
    """One controller update: the sampled children, their rewards and the baseline used."""

    step: int
    layers: list[tuple[NasLayer, ...]]
    rewards: list[float]
    baseline: float
    seconds: float


def search(
    space: SearchSpace,
    reward: Callable[[tuple[NasLayer, ...]], float],
    steps: int,
    per_step: int = 1,
    lr: float = 6e-4,
    baseline_decay: float = 0.9,
    seed: int = 0,
    budget_seconds: float | None = None,
    controller: Controller | None = None,
) -> list[SearchStep]:
    """Run ``steps`` REINFORCE updates of ``per_step`` sampled children each (stopping early
    once ``budget_seconds`` are spent); return the history."""
    np.random.seed(seed)
    controller = controller or Controller(space)
    algo = Reinforce(controller, lr=lr, baseline_decay=baseline_decay)
    rng = np.random.default_rng(seed)
    history: list[SearchStep] = []
    t_start = time.time()
    for step in range(steps):
        t0 = time.time()
        samples = [controller.sample(rng) for _ in range(per_step)]
        rewards = [float(reward(s.layers)) for s in samples]
        if not all(math.isfinite(r) for r in rewards):
            raise ValueError(f"reward is not finite: {rewards}")
        b = algo.update(samples, rewards)
        history.append(SearchStep(step, [s.layers for s in samples], rewards, b, time.time() - t0))
        if budget_seconds is not None and time.time() - t_start > budget_seconds:
            break
    return history


def describe(layers: Sequence[NasLayer]) -> str:
    """A one-line description of an architecture, e.g. ``3x5/36 <- [0]``."""
    return "; ".join(
        f"{i}: {la.fh}x{la.fw}/{la.n} <- {list(la.inputs) if la.inputs else 'image'}"
        for i, la in enumerate(layers)
    )
