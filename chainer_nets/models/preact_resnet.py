r"""Identity Mappings in Deep Residual Networks (He, Zhang, Ren, Sun, 2016; arXiv 1603.05027).

The paper's question: what should sit on the shortcut and after the addition
so that a signal passes *unchanged* from any block to any deeper one? With an
identity shortcut and no activation after the addition,

.. math::  \mathbf{x}_{l+1} = \mathbf{x}_l + \mathcal{F}(\mathbf{x}_l)
           \quad\Rightarrow\quad
           \mathbf{x}_L = \mathbf{x}_l + \sum_{i=l}^{L-1} \mathcal{F}(\mathbf{x}_i),

and the gradient :math:`\partial\mathcal{E}/\partial\mathbf{x}_l` contains the
term :math:`\partial\mathcal{E}/\partial\mathbf{x}_L` directly. This requires
moving BN and ReLU *before* each convolution ("pre-activation"):
:math:`\mathcal{F}(\mathbf{x}) = W_2 * \mathrm{ReLU}(\mathrm{BN}(W_1 * \mathrm{ReLU}(\mathrm{BN}(\mathbf{x}))))`.

CIFAR networks: ResNet-110 (basic units, 6n+2 layers, n = 18, widths 16/32/64)
and the bottleneck ResNet-164 / ResNet-1001 (9n+2 layers, n = 18 / 111) whose
units are BN-ReLU-1x1 -> BN-ReLU-3x3 -> BN-ReLU-1x1 with output widths
64/128/256 (4x the bottleneck width). In the first unit of each stage the
width changes: there the first BN-ReLU is shared by both paths and the
shortcut is a 1x1 projection with the stage's stride (as in the authors'
code); all other shortcuts are identities. The stride sits on the first 1x1
conv. The network ends in BN-ReLU, global average pooling and a linear layer.

ResNet-110 follows fb.resnet.torch (``models/preresnet.lua``, the code the paper's
CIFAR ResNet-110 baseline comes from): its CIFAR path never passes ``'first'``, so the first
unit of *every* stage, the very first unit included, is a ``both_preact`` unit: BN-ReLU is
applied once and *both* paths read it, the option-A shortcut (sub-sampling and zero channels)
included. The other units' shortcuts read the raw input. Sharing changes no parameter count.
The bottleneck networks (164, 1001) match KaimingHe/resnet-1k-layers, whose projection
shortcuts read the shared pre-activation too. Initialisation: fb.resnet.torch's
(:data:`chainer_nets.blocks.FB_RESNET_TORCH`: He-normal over the output fan, BN scale 1),
which resnet-1k-layers keeps.
"""

from __future__ import annotations

import chainer
import chainer.functions as F

from chainer_nets.blocks import (
    PreActHead,
    StagedNetwork,
    bn,
    conv1x1,
    conv3x3,
    stage_plan,
    zero_pad_shortcut,
)
from chainer_nets.registry import Paper

ARXIV = "1603.05027"
PAPER = "Identity Mappings in Deep Residual Networks (pre-activation ResNet)"


class PreActBasic(chainer.Chain):
    r"""Pre-activation basic unit, :math:`\mathbf{x}_{l+1} = \mathbf{x}_l + \mathcal{F}(\mathbf{x}_l)`.

    Where the width grows the shortcut is the parameter-free option A of the
    original ResNet-110 this network is compared against. With ``both_preact`` (the first
    unit of a stage in fb.resnet.torch) the shortcut reads :math:`\mathrm{ReLU}(\mathrm{BN}(\mathbf{x}))`
    instead of :math:`\mathbf{x}`.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, both_preact: bool = False) -> None:
        super().__init__()
        self.out_ch, self.stride, self.both_preact = out_ch, stride, both_preact
        with self.init_scope():
            self.bn1 = bn(in_ch)
            self.conv1 = conv3x3(in_ch, out_ch, stride)
            self.bn2 = bn(out_ch)
            self.conv2 = conv3x3(out_ch, out_ch)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        r""":math:`\mathbf{x} + W_2 * \mathrm{ReLU}(\mathrm{BN}(W_1 * \mathrm{ReLU}(\mathrm{BN}(\mathbf{x}))))`."""
        a = F.relu(self.bn1(x))
        h = self.conv2(F.relu(self.bn2(self.conv1(a))))
        return h + zero_pad_shortcut(a if self.both_preact else x, self.out_ch, self.stride)


class PreActBottleneck(chainer.Chain):
    """Pre-activation bottleneck unit: BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1 (x4 width)."""

    expansion = 4

    def __init__(self, in_ch: int, mid_ch: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = mid_ch * self.expansion
        self.project = in_ch != out_ch or stride != 1
        with self.init_scope():
            self.bn1 = bn(in_ch)
            self.conv1 = conv1x1(in_ch, mid_ch, stride)
            self.bn2 = bn(mid_ch)
            self.conv2 = conv3x3(mid_ch, mid_ch)
            self.bn3 = bn(mid_ch)
            self.conv3 = conv1x1(mid_ch, out_ch)
            if self.project:
                self.shortcut = conv1x1(in_ch, out_ch, stride)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Identity shortcut, or a projection of the shared pre-activation where the shape changes."""
        a = F.relu(self.bn1(x))
        h = self.conv1(a)
        h = self.conv2(F.relu(self.bn2(h)))
        h = self.conv3(F.relu(self.bn3(h)))
        return h + (self.shortcut(a) if self.project else x)


class PreActResNetCifar(StagedNetwork):
    """Pre-activation ResNet for CIFAR: conv3x3(16), three stages, BN-ReLU-GAP-FC."""

    def __init__(self, depth: int, bottleneck: bool, n_classes: int = 10) -> None:
        super().__init__()
        widths = (16, 32, 64)
        n = (depth - 2) // (9 if bottleneck else 6)
        expansion = PreActBottleneck.expansion if bottleneck else 1
        with self.init_scope():
            self.conv1 = conv3x3(3, 16)
            self.blocks = chainer.ChainList()
            for b in stage_plan(16, widths, n, expansion):
                if bottleneck:
                    self.blocks.append(PreActBottleneck(b.in_ch, b.out_ch, b.stride))
                else:  # fb.resnet.torch: the first unit of every stage is 'both_preact'
                    self.blocks.append(PreActBasic(b.in_ch, b.out_ch, b.stride, b.index == 0))
            self.head = PreActHead(widths[-1] * expansion, n_classes)

    def stem(self, x: chainer.Variable) -> chainer.Variable:
        """One conv3x3 (the first unit pre-activates it)."""
        return self.conv1(x)


# name, depth, bottleneck, paper's test error %, paper's parameter count (M): Table 3 / Table 4.
_PAPER = Paper(11, PAPER, ARXIV, "preresnet")
for _name, _depth, _bottleneck, _err, _params in [
    ("preresnet110", 110, False, 6.37, "1.7"),
    ("preresnet164", 164, True, 5.46, "1.7"),
    ("preresnet1001", 1001, True, 4.92, "10.2"),
]:
    # 10.2M for ResNet-1001 is the count of conv/linear weights; with BN's scale and shift
    # the same network has 10.33M parameters.
    _PAPER.register(
        _name,
        PreActResNetCifar,
        kwargs={"depth": _depth, "bottleneck": _bottleneck},
        error=_err,
        paper_params=_params,
        params_counting="weights",
        description=f"pre-activation ResNet-{_depth}, "
        + ("bottleneck units, projection shortcuts" if _bottleneck else "basic units"),
    )
