r"""Neural Architecture Search with Reinforcement Learning (Zoph, Le, 2016; arXiv 1611.01578):
the CIFAR-10 networks the search found, built from a per-layer description.

A child network of the paper's search is a stack of :math:`L` convolutional layers. Layer
:math:`i` has a filter height :math:`h_i`, a filter width :math:`w_i`, a number of filters
:math:`n_i` and a set :math:`S_i` of earlier layers feeding it. Its input is the
concatenation, along the channels, of those layers' outputs, each zero-padded to the largest
spatial size among them; a layer with no input takes the image:

.. math::  \mathbf{y}_i = \mathrm{ReLU}\Big(\mathrm{BN}\Big(W_i * \mathrm{concat}_{j\in S_i}
           \mathrm{pad}(\mathbf{y}_j)\Big)\Big), \qquad \mathbf{y}_{\text{in}} = \mathbf{x}
           \ \text{ if } S_i = \emptyset,

where :math:`W_i` has :math:`n_i` filters of size :math:`h_i\times w_i`. The skip connections
are *not* residual: nothing is added, so a layer's width grows with the number of layers it
reads. The outputs of layers no later layer reads are concatenated (zero-padded the same
way) into the final hidden state, which goes to global average pooling and a linear
classifier. These are the paper's three rules against "compilation failures" (Section 3.3):
image for a layer without input, unconnected outputs concatenated at the end, zero padding of
mismatched sizes.

**What the paper specifies, and what we register.** The paper's Table 1 lists four
CIFAR-10 networks found by the search. Only one of them is specified layer by layer: the
15-layer network searched without strides or pooling (4.2M parameters, 5.50% error), drawn
in the appendix figure (Figure 7) with each layer's filter height, filter width, number of
filters and incoming skip connections. It is registered as ``nas_appendix_a``. The paper
gives no layer-level description of the 20-layer network that predicts strides (2.5M,
6.01%), nor of the 39-layer networks with two max-pooling layers (7.1M, 4.47%) and with 40
more filters per layer (37.4M, 3.65%; the paper says the controller predicted 13 layers, each
a fully connected block of 3 layers, with filter counts from {6, 12, 24, 36}). Neither the
paper nor any public repository we found gives those networks' filter sizes or connections,
so they are **not registered**: any network of that shape would be our invention, not the
paper's. The generic :class:`NasNet` builds any such description (strides included), and
the miniature search below samples them.

**How the appendix figure was transcribed and checked.** The figure is an image; we compared
two independent public transcriptions of it:

* the 2016 Chainer implementation (nutszebra's ``neural_architecture_search_with_
  reinforcement_learning_appendix_a``, ``neural_architecture_search_appendix_a.py``), which
  encodes the filter sizes and counts as lists and the skip connections as a 15x15 matrix
  whose column :math:`i` lists the layers concatenated with layer :math:`i`'s output to form
  layer :math:`i+1`'s input (its last column, for a 16th layer that does not exist, marks
  layer 2 and is never read);
* a 2025 PyTorch transcription of the same figure (``NASCNN15``, repository of the "VC-ARN"
  course project), which lists every layer's inputs by hand.

Both agree on all 15 filter sizes and counts and on the inputs of 14 of the 15 layers. They
differ on the last layer: the second one feeds layer 6 (1-based) into layer 15 as well. The
parameter count decides it: with that connection the network has 4,201,630 parameters
(4.20M, the paper's 4.2M); without it, 4,120,990 (4.12M, which rounds to 4.1M, the figure the
2016 table quotes for the 2016 code). ``nas_appendix_a`` therefore has the connection. (We
could not look at the figure itself here, so this rests on the two transcriptions and the
paper's parameter count.)
Every layer of the figure reads its predecessor; layer 15 is the only output no later layer
reads, so the final hidden state is layer 15's output alone.

**Choices the paper leaves open.** The paper names ReLU and batch normalization as part of the
search space but not their order; we use conv → BN → ReLU with no convolution bias. It does
not say on which side the zero padding goes; we pad at the bottom and right. Convolutions
keep the spatial size ("same" padding, :math:`\lfloor h/2\rfloor \times \lfloor w/2\rfloor`),
so without strides every layer is 32x32 and the padding rule never fires in
``nas_appendix_a``.

**The 2016 implementation's network** is registered as ``nas_appendix_a_2016``, the figure as
that code read it: the connection from layer 6 to layer 15 is missing, convolutions have no
padding (the maps shrink, and the padding rule does fire), biases, and each layer is conv →
ReLU → BN. Its classifier (global average pooling then a 1x1 convolution with bias) is the
same map as ours.

**The search in miniature** (:class:`Controller`, :class:`Reinforce`, :func:`search`): an
LSTM controller samples child networks, and REINFORCE with a moving-average baseline trains it
on the children's validation accuracies.

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
from typing import NamedTuple

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
from chainer import initializers

from chainer_nets.blocks import ClassifierHead, bn, conv_init
from chainer_nets.registry import Paper

ARXIV = "1611.01578"
PAPER = "Neural Architecture Search with Reinforcement Learning (NAS)"


class NasLayer(NamedTuple):
    """One layer of a NAS child network: filter height and width, number of filters, the
    0-based indices of the earlier layers feeding it (empty: the image), and its stride."""

    fh: int
    fw: int
    n: int
    inputs: tuple[int, ...] = ()
    stride: int = 1


def check_layers(layers: Sequence[NasLayer]) -> None:
    """Raise ``ValueError`` with one clear message if ``layers`` is not a valid description."""
    if not layers:
        raise ValueError("a NAS network needs at least one layer")
    for i, layer in enumerate(layers):
        if min(layer.fh, layer.fw, layer.n, layer.stride) < 1:
            raise ValueError(f"layer {i}: sizes, filters and stride must be positive, got {layer}")
        bad = [j for j in layer.inputs if not 0 <= j < i]
        if bad:
            raise ValueError(f"layer {i} reads layers {bad}: only earlier layers 0..{i - 1} can")
        if len(set(layer.inputs)) != len(layer.inputs):
            raise ValueError(f"layer {i} lists an input twice: {layer.inputs}")


def unconnected(layers: Sequence[NasLayer]) -> list[int]:
    """Indices of the layers whose output no later layer reads (they form the final state)."""
    read = {j for layer in layers for j in layer.inputs}
    return [i for i in range(len(layers)) if i not in read]


def concat_padded(xs: Sequence[chainer.Variable]) -> chainer.Variable:
    r""":math:`\mathrm{concat}_j\,\mathrm{pad}(\mathbf{y}_j)`: zero-pad every map at the bottom
    and right to the largest height and width among ``xs``, then concatenate the channels."""
    if len(xs) == 1:
        return xs[0]
    H = max(x.shape[2] for x in xs)
    W = max(x.shape[3] for x in xs)
    padded = [
        x
        if x.shape[2:] == (H, W)
        else F.pad(x, ((0, 0), (0, 0), (0, H - x.shape[2]), (0, W - x.shape[3])), "constant")
        for x in xs
    ]
    return F.concat(padded, axis=1)


class NasConv(chainer.Chain):
    """One child-network layer: an ``fh`` x ``fw`` convolution with BN and ReLU, in the order
    ``order`` ("conv_bn_relu", ours, or "conv_relu_bn", the 2016 code's)."""

    def __init__(
        self,
        in_ch: int,
        layer: NasLayer,
        same: bool = True,
        order: str = "conv_bn_relu",
        bias: bool = False,
    ) -> None:
        super().__init__()
        if order not in ("conv_bn_relu", "conv_relu_bn"):
            raise ValueError(f"order must be conv_bn_relu or conv_relu_bn, got {order!r}")
        self.order = order
        pad = (layer.fh // 2, layer.fw // 2) if same else 0
        with self.init_scope():
            self.conv = L.Convolution2D(
                in_ch,
                layer.n,
                (layer.fh, layer.fw),
                layer.stride,
                pad,
                nobias=not bias,
                initialW=conv_init(),
            )
            self.bn = bn(layer.n)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        r""":math:`\mathrm{ReLU}(\mathrm{BN}(W * x))` (or BN after the ReLU)."""
        if self.order == "conv_bn_relu":
            return F.relu(self.bn(self.conv(x)))
        return self.bn(F.relu(self.conv(x)))


class NasNet(chainer.Chain):
    """A NAS child network from its per-layer description (see the module docstring)."""

    def __init__(
        self,
        layers: Sequence[NasLayer],
        n_classes: int = 10,
        same: bool = True,
        order: str = "conv_bn_relu",
        bias: bool = False,
        in_ch: int = 3,
    ) -> None:
        super().__init__()
        layers = [NasLayer(*layer) for layer in layers]
        check_layers(layers)
        self.layers = layers
        self.final = unconnected(layers)
        with self.init_scope():
            self.convs = chainer.ChainList()
            for layer in layers:
                width = sum(layers[j].n for j in layer.inputs) if layer.inputs else in_ch
                self.convs.append(NasConv(width, layer, same, order, bias))
            self.head = ClassifierHead(sum(layers[i].n for i in self.final), n_classes)

    def features(self, x: chainer.Variable) -> list[chainer.Variable]:
        r"""Every layer's output :math:`\mathbf{y}_i`, first to last."""
        outs: list[chainer.Variable] = []
        for layer, conv in zip(self.layers, self.convs, strict=True):
            h = concat_padded([outs[j] for j in layer.inputs]) if layer.inputs else x
            outs.append(conv(h))
        return outs

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores: unconnected outputs concatenated (zero-padded), pooled, classified."""
        outs = self.features(x)
        return self.head(concat_padded([outs[i] for i in self.final]))


# The appendix figure (Figure 7), 0-based: filter height, width, number of filters, inputs.
# Each layer reads its predecessor; the rest are the figure's skip connections.
_FIGURE_7 = [
    (3, 3, 36, ()),
    (3, 3, 48, (0,)),
    (3, 3, 36, (0, 1)),
    (5, 5, 36, (0, 1, 2)),
    (3, 7, 48, (2, 3)),
    (7, 7, 48, (1, 2, 3, 4)),
    (7, 7, 48, (1, 2, 3, 4, 5)),
    (7, 3, 36, (0, 5, 6)),
    (7, 1, 36, (0, 4, 5, 7)),
    (7, 7, 36, (0, 2, 3, 4, 5, 6, 7, 8)),
    (5, 7, 36, (0, 1, 4, 5, 6, 7, 8, 9)),
    (7, 7, 48, (0, 1, 2, 3, 5, 10)),
    (7, 5, 48, (0, 2, 5, 6, 7, 8, 9, 10, 11)),
    (7, 5, 48, (2, 6, 11, 12)),
    (7, 5, 48, (5, 6, 10, 11, 12, 13)),
]
#: The 15-layer network of the appendix figure (no strides, no pooling).
APPENDIX_A: tuple[NasLayer, ...] = tuple(NasLayer(*spec) for spec in _FIGURE_7)
#: The same figure as the 2016 Chainer code read it: layer 14 does not read layer 5.
APPENDIX_A_2016: tuple[NasLayer, ...] = APPENDIX_A[:-1] + (
    APPENDIX_A[-1]._replace(inputs=(6, 10, 11, 12, 13)),
)


# ---------------------------------------------------------------------------------------------
# The search in miniature: the controller, REINFORCE, and child networks as rewards.
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


_paper = Paper(22, PAPER, ARXIV, "nas")
_paper.register(
    "nas_appendix_a",
    NasNet,
    kwargs={"layers": APPENDIX_A},
    error=5.50,  # Table 1: 15 layers, no strides or pooling
    paper_params="4.2",
    description="NAS v1: the 15-layer network of the appendix figure (no strides or pooling)",
)
_paper.register(
    "nas_appendix_a_2016",
    NasNet,
    kwargs={"layers": APPENDIX_A_2016, "same": False, "order": "conv_relu_bn", "bias": True},
    paper_params="4.2",
    params_mismatch=(
        "4.12M against the paper's 4.2M: the 2016 Chainer code's reading of the appendix "
        "figure lacks the skip connection from layer 6 to layer 15 (1-based), 80,640 weights; "
        "with it the figure gives 4.20M (nas_appendix_a)"
    ),
    description=(
        "the appendix network as the 2016 Chainer code built it: one skip connection fewer, "
        "unpadded convolutions, conv-ReLU-BN with biases"
    ),
)
