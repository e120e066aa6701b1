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
the miniature search in :mod:`chainer_nets.nas_search` samples them.

**How the appendix figure was transcribed and checked.** The figure is an image; we compared
two independent public transcriptions of it:

* the 2016 Chainer implementation (nutszebra's ``neural_architecture_search_with_
  reinforcement_learning_appendix_a``, ``neural_architecture_search_appendix_a.py``), which
  encodes the filter sizes and counts as lists and the skip connections as a 15x15 matrix
  whose column :math:`i` lists the layers concatenated with layer :math:`i`'s output to form
  layer :math:`i+1`'s input;
* a 2025 PyTorch transcription of the same figure (``NASCNN15``, repository of the "VC-ARN"
  course project), which lists every layer's inputs by hand.

Both agree on all 15 filter sizes and counts and on the inputs of 14 of the 15 layers. They
differ on the last layer: the second one feeds layer 6 (1-based) into layer 15 as well. The
parameter count decides it: with that connection the network has 4,201,630 parameters
(4.20M, the paper's 4.2M); without it, 4,120,990 (4.12M, which rounds to 4.1M, the figure the
2016 table quotes for the 2016 code). ``nas_appendix_a`` therefore has the connection.
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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import chainer
import chainer.functions as F
import chainer.links as L

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
