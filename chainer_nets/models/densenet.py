r"""Densely Connected Convolutional Networks (Huang, Liu, van der Maaten, Weinberger, 2016;
arXiv 1608.06993).

Inside a dense block, layer :math:`\ell` sees the feature maps of *every* earlier layer
of the block, concatenated along the channels, and adds :math:`k` new maps (the growth
rate) to that collection:

.. math::  \mathbf{x}_\ell = H_\ell\big([\mathbf{x}_0, \mathbf{x}_1, \ldots, \mathbf{x}_{\ell-1}]\big),

so layer :math:`\ell` of a block whose input has :math:`k_0` maps receives
:math:`k_0 + (\ell-1)\,k` maps. :math:`H_\ell` is BN-ReLU-conv3x3 to :math:`k` maps
(DenseNet), or, with bottlenecks (DenseNet-B), BN-ReLU-conv1x1 to :math:`4k` maps followed
by BN-ReLU-conv3x3 to :math:`k`. Between blocks a transition (BN-ReLU-conv1x1-avgpool 2x2)
halves the resolution and keeps :math:`\lfloor\theta m\rfloor` of the :math:`m` maps;
DenseNet-C uses the compression :math:`\theta = 0.5`. The CIFAR networks have a 3x3 stem
convolution (16 maps, or :math:`2k` for DenseNet-BC), three dense blocks of
:math:`n = (L-4)/3` layers (:math:`(L-4)/6` bottleneck layers for BC, each counting as
two), and BN-ReLU, global average pooling and a linear classifier.

Memory: concatenating naively makes every layer store its own copy of the concatenated
input for the backward pass, so the activation memory of a block grows with the square
of its depth. With ``memory_efficient=True`` each layer wraps concatenation, BN, ReLU and
the convolution that reads the concatenation in ``F.forget``: the forward pass keeps only
the :math:`k`-map outputs and recomputes the rest during the backward pass.
"""

from __future__ import annotations

import chainer
import chainer.functions as F

from chainer_nets.blocks import PreActHead, bn, conv1x1, conv3x3
from chainer_nets.registry import ModelInfo, register

ARXIV = "1608.06993"
PAPER = "Densely Connected Convolutional Networks (DenseNet)"


class DenseLayer(chainer.Chain):
    r""":math:`H_\ell` of one dense layer: BN-ReLU-conv3x3 to :math:`k` maps, or, with
    ``bottleneck``, BN-ReLU-conv1x1 to :math:`4k` maps then BN-ReLU-conv3x3 to :math:`k`.

    Dropout (the paper's no-augmentation runs only) follows every convolution.
    """

    def __init__(
        self,
        in_ch: int,
        growth: int,
        bottleneck: bool = False,
        dropout: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        self.in_ch = in_ch
        self.bottleneck = bottleneck
        self.dropout = dropout
        self.memory_efficient = memory_efficient
        with self.init_scope():
            self.bn1 = bn(in_ch)
            if bottleneck:
                self.conv1 = conv1x1(in_ch, 4 * growth)
                self.bn2 = bn(4 * growth)
                self.conv2 = conv3x3(4 * growth, growth)
            else:
                self.conv1 = conv3x3(in_ch, growth)

    def bottom(self, *features: chainer.Variable) -> chainer.Variable:
        r"""The first convolution of :math:`\mathrm{ReLU}(\mathrm{BN}([\mathbf{x}_0, \ldots]))`."""
        h = F.concat(features, axis=1) if len(features) > 1 else features[0]
        return self.conv1(F.relu(self.bn1(h)))

    def drop(self, h: chainer.Variable) -> chainer.Variable:
        """Dropout after a convolution (a no-op unless training with ``dropout > 0``)."""
        return F.dropout(h, self.dropout) if self.dropout > 0 else h

    def forward(self, *features: chainer.Variable) -> chainer.Variable:
        """The :math:`k` new feature maps computed from all earlier ones."""
        if self.memory_efficient and chainer.config.enable_backprop:
            h = F.forget(self.bottom, *features)  # recomputed in the backward pass
        else:
            h = self.bottom(*features)
        h = self.drop(h)
        if self.bottleneck:
            h = self.drop(self.conv2(F.relu(self.bn2(h))))
        return h


class DenseBlock(chainer.ChainList):
    r"""``n`` dense layers; the output is :math:`[\mathbf{x}_0, \mathbf{x}_1, \ldots, \mathbf{x}_n]`."""

    def __init__(
        self,
        in_ch: int,
        n_layers: int,
        growth: int,
        bottleneck: bool,
        dropout: float,
        memory_efficient: bool,
    ) -> None:
        super().__init__()
        for i in range(n_layers):
            layer_in = in_ch + i * growth  # k0 + (l - 1) k for layer l = i + 1
            self.append(DenseLayer(layer_in, growth, bottleneck, dropout, memory_efficient))
        self.out_ch = in_ch + n_layers * growth

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Run every layer on the concatenation of all earlier maps; concatenate all."""
        features = [x]
        for layer in self:
            features.append(layer(*features))
        return F.concat(features, axis=1)


class Transition(chainer.Chain):
    r"""BN-ReLU-conv1x1 to :math:`\lfloor\theta m\rfloor` maps (then dropout), 2x2 average pooling."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = dropout
        with self.init_scope():
            self.bn = bn(in_ch)
            self.conv = conv1x1(in_ch, out_ch)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Compress the channels and halve the resolution."""
        h = self.conv(F.relu(self.bn(x)))
        if self.dropout > 0:
            h = F.dropout(h, self.dropout)
        return F.average_pooling_2d(h, 2, 2)


def layers_per_block(depth: int, bottleneck: bool) -> int:
    """Dense layers per block of a CIFAR DenseNet of ``depth``: (L-4)/3, or (L-4)/6 for BC."""
    per = 6 if bottleneck else 3
    if depth < 4 + per or (depth - 4) % per:
        kind = "6n+4 (bottleneck)" if bottleneck else "3n+4"
        raise ValueError(f"DenseNet depth must be {kind}, got {depth}")
    return (depth - 4) // per


class DenseNetCifar(chainer.Chain):
    """DenseNet / DenseNet-BC for 32x32 inputs: stem, three dense blocks, two transitions, head."""

    def __init__(
        self,
        depth: int,
        growth: int,
        bottleneck: bool = False,
        compression: float = 1.0,
        dropout: float = 0.0,
        memory_efficient: bool = False,
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        n = layers_per_block(depth, bottleneck)
        self.stem_ch = 2 * growth if bottleneck else 16
        with self.init_scope():
            self.conv1 = conv3x3(3, self.stem_ch)
            self.blocks = chainer.ChainList()
            self.transitions = chainer.ChainList()
            ch = self.stem_ch
            for i in range(3):
                block = DenseBlock(ch, n, growth, bottleneck, dropout, memory_efficient)
                self.blocks.append(block)
                ch = block.out_ch
                if i < 2:
                    out = int(compression * ch)  # floor, as in the authors' code
                    self.transitions.append(Transition(ch, out, dropout))
                    ch = out
            self.head = PreActHead(ch, n_classes)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores (logits) for a batch of 3x32x32 images."""
        h = self.conv1(x)
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i < 2:
                h = self.transitions[i](h)
        return self.head(h)


# name, depth L, growth k, BC, paper's C10+ error %, paper's parameter count (M):
# the CIFAR table of the paper (also in the authors' README).
for _name, _depth, _k, _bc, _err, _params in [
    ("densenet40_k12", 40, 12, False, 5.24, "1.0"),
    ("densenet100_k12", 100, 12, False, 4.10, "7.0"),
    ("densenet100_k24", 100, 24, False, 3.74, "27.2"),
    ("densenet_bc100_k12", 100, 12, True, 4.51, "0.8"),
    ("densenet_bc250_k24", 250, 24, True, 3.62, "15.3"),
    ("densenet_bc190_k40", 190, 40, True, 3.46, "25.6"),
]:
    register(
        ModelInfo(
            name=_name,
            factory=DenseNetCifar,
            kwargs={
                "depth": _depth,
                "growth": _k,
                "bottleneck": _bc,
                "compression": 0.5 if _bc else 1.0,
            },
            paper_no=19,
            paper=PAPER,
            arxiv=ARXIV,
            recipe="densenet",
            paper_accuracy=round(100 - _err, 2),
            paper_params=_params,
            description=f"DenseNet{'-BC' if _bc else ''} (L={_depth}, k={_k})",
        )
    )
