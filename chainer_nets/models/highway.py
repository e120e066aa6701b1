r"""Training Very Deep Networks (Srivastava, Greff, Schmidhuber, 2015; arXiv 1507.06228).

The paper's question: can a plain stack of many layers be trained by plain
gradient descent if each layer may *choose* to pass its input through
unchanged? A highway layer adds two gates to a layer :math:`H`: a transform
gate :math:`T` and a carry gate :math:`C = 1 - T`,

.. math::  \mathbf{y} = H(\mathbf{x}, W_H)\odot T(\mathbf{x}, W_T)
           + \mathbf{x}\odot\big(1 - T(\mathbf{x}, W_T)\big),
           \qquad T(\mathbf{x}) = \sigma(W_T\mathbf{x} + \mathbf{b}_T).

With :math:`T \to 0` the layer is the identity, :math:`\mathbf{y} = \mathbf{x}`
(an "information highway"); with :math:`T \to 1` it is the plain layer
:math:`H`. The transform-gate bias :math:`\mathbf{b}_T` is initialised
*negative*, so every layer starts out mostly carrying its input. In a
convolutional highway layer :math:`H` and :math:`T` are convolutions with the
same kernel size, zero-padded so that :math:`H`, :math:`T` and :math:`\mathbf{x}`
have the same shape.

CIFAR-10 network (Table 1, "Highway B", 19 layers, about 2.3M parameters,
92.46% accuracy; the paper's Highway A/B/C follow the FitNet architectures of
Romero et al.). The layer list is taken from the authors' public Caffe
definition of the 19-layer CIFAR-10 network (flukeskywalker/highway-networks,
``examples/highways/cifar10-19layers``):

====================  =======================================================
input                 dropout 0.2
stage 1 (32x32)       plain conv3x3 3->32 + ReLU, 4 highway conv3x3 at 32
                      max-pool 2x2/2, dropout 0.2
stage 2 (16x16)       plain conv3x3 32->80 + ReLU, 5 highway conv3x3 at 80
                      max-pool 2x2/2, dropout 0.2
stage 3 (8x8)         plain conv3x3 80->128 + ReLU, 5 highway conv3x3 at 128
head                  conv1x1 128->100 + ReLU, 8x8 average pool, dropout 0.2,
                      fully connected -> classes
====================  =======================================================

That is 3 + 14 + 2 = 19 weighted layers. Highway layers use :math:`H = \mathrm{ReLU}`
and transform-gate bias :math:`-2`; every convolution has a bias and there is
no batch normalization. The last layer has 10 outputs (the file had 100 until commit
246c720, "Minor fix in cifar-10 example", set it to 10); the 1x1 convolution before it has
100.

Initialisation, as the authors ran it: their Caffe fork redefines the
"xavier" filler (``include/caffe/filler.hpp``: the uniform :math:`\sqrt{3/\text{fan-in}}`
line is commented out) as a Gaussian with std :math:`\sqrt{2/\text{fan-in}}`, i.e. He-normal
over the input fan, for every convolution and both halves (:math:`H`, :math:`T`) of every
highway layer. The first convolution's filler is ``type: "gaussian"`` with ``value: 0.05``;
Caffe's Gaussian filler reads ``std`` (default 1, ``caffe.proto``) and ignores ``value``, so
those weights were drawn with std 1. The classifier is Gaussian with std 0.05, biases 0
(transform gates -2). Counting every weight and bias, the network has 2,256,838 parameters:
2.3M as the paper says.

The 2016 Chainer reimplementation differs (BN-ReLU-conv everywhere, a deeper
gate sub-network, zero-padded carry, 2.8M parameters); see the notebook.
"""

from __future__ import annotations

import chainer
import chainer.functions as F
import chainer.links as L
from chainer import initializers

from chainer_nets.registry import Paper

ARXIV = "1507.06228"
PAPER = "Training Very Deep Networks (Highway Networks)"

#: The transform-gate bias of every highway layer in the authors' CIFAR-10 network.
GATE_BIAS = -2.0


#: The authors' fork's "xavier": N(0, 2/fan-in), He-normal over the input fan.
XAVIER_OF_THE_FORK = initializers.HeNormal(fan_option="fan_in")
#: Std of the first convolution's weights: the Gaussian filler's default, ``value`` is ignored.
FIRST_CONV_STD = 1.0
#: Std of the classifier's Gaussian filler.
FC_STD = 0.05


def _conv(
    in_ch: int,
    out_ch: int,
    ksize: int,
    bias: float = 0.0,
    init: chainer.Initializer = XAVIER_OF_THE_FORK,
) -> L.Convolution2D:
    """Convolution with bias and "same" padding, weights from the fork's "xavier" filler."""
    return L.Convolution2D(
        in_ch,
        out_ch,
        ksize,
        1,
        ksize // 2,
        initialW=init,
        initial_bias=initializers.Constant(bias),
    )


class HighwayConv(chainer.Chain):
    r"""Convolutional highway layer, :math:`\mathbf{y} = H(\mathbf{x})\,T(\mathbf{x}) + \mathbf{x}\,(1-T(\mathbf{x}))`.

    :math:`H(\mathbf{x}) = \mathrm{ReLU}(W_H * \mathbf{x} + \mathbf{b}_H)` and
    :math:`T(\mathbf{x}) = \sigma(W_T * \mathbf{x} + \mathbf{b}_T)` with
    :math:`\mathbf{b}_T` initialised to ``gate_bias`` (negative: start near the identity).
    """

    def __init__(self, channels: int, ksize: int = 3, gate_bias: float = GATE_BIAS) -> None:
        super().__init__()
        with self.init_scope():
            self.h = _conv(channels, channels, ksize)
            self.t = _conv(channels, channels, ksize, bias=gate_bias)

    def transform_gate(self, x: chainer.Variable) -> chainer.Variable:
        r""":math:`T(\mathbf{x}) = \sigma(W_T * \mathbf{x} + \mathbf{b}_T)`, in (0, 1)."""
        return F.sigmoid(self.t(x))

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Gate between the transformed input and the input itself."""
        h = F.relu(self.h(x))  # H(x)
        t = self.transform_gate(x)  # T(x)
        return h * t + x * (1 - t)  # H(x) T(x) + x (1 - T(x))


class HighwayStage(chainer.Chain):
    """One resolution: a plain conv3x3 + ReLU that sets the width, then ``n`` highway layers."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        n: int,
        gate_bias: float = GATE_BIAS,
        plain_init: chainer.Initializer = XAVIER_OF_THE_FORK,
    ) -> None:
        super().__init__()
        with self.init_scope():
            self.plain = _conv(in_ch, out_ch, 3, init=plain_init)
            self.layers = chainer.ChainList(*[HighwayConv(out_ch, 3, gate_bias) for _ in range(n)])

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Plain layer, then the highway layers."""
        h = F.relu(self.plain(x))
        for layer in self.layers:
            h = layer(h)
        return h


class HighwayFitNet(chainer.Chain):
    """The paper's FitNet-style convolutional highway network for CIFAR (Highway B: 19 layers)."""

    def __init__(
        self,
        widths: tuple[int, int, int] = (32, 80, 128),
        depths: tuple[int, int, int] = (4, 5, 5),
        head_ch: int = 100,
        dropout: float = 0.2,
        gate_bias: float = GATE_BIAS,
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        self.dropout = dropout
        with self.init_scope():
            self.stages = chainer.ChainList()
            in_ch = 3
            for width, n in zip(widths, depths, strict=True):
                # the first convolution: a Caffe "gaussian" filler without ``std``, so std 1
                init = initializers.Normal(FIRST_CONV_STD) if in_ch == 3 else XAVIER_OF_THE_FORK
                self.stages.append(HighwayStage(in_ch, width, n, gate_bias, init))
                in_ch = width
            self.conv_head = _conv(in_ch, head_ch, 1)
            self.fc = L.Linear(
                head_ch, n_classes, initialW=initializers.Normal(FC_STD), initial_bias=0
            )

    def _drop(self, h: chainer.Variable) -> chainer.Variable:
        return F.dropout(h, self.dropout) if self.dropout > 0 else h  # no-op unless training

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores (logits) for a batch of 3x32x32 images."""
        h = self._drop(x)
        for i, stage in enumerate(self.stages):
            if i > 0:
                h = self._drop(F.max_pooling_2d(h, 2, 2))
            h = stage(h)
        h = F.relu(self.conv_head(h))
        h = F.mean(h, axis=(2, 3))  # the 8x8 average pool covers the whole map
        return self.fc(self._drop(h))


Paper(7, PAPER, ARXIV, "highway").register(
    "highway_fitnet19",
    HighwayFitNet,
    paper_accuracy=92.46,
    paper_params="2.3",
    params_counting="all",
    description="Highway B: 19-layer FitNet-style convolutional highway net (authors' Caffe layout)",
)
