r"""Deep Residual Learning for Image Recognition (He, Zhang, Ren, Sun, 2015; arXiv 1512.03385).

The paper's question: why does a deeper plain network train *worse* than a
shallower one, and how can depth be made to help? Its answer is to let each
block learn a residual :math:`\mathcal{F}` around an identity shortcut,

.. math::  \mathbf{y} = \mathrm{ReLU}\big(\mathcal{F}(\mathbf{x}, \{W_i\}) + \mathbf{x}\big),
           \qquad \mathcal{F} = \mathrm{BN}(W_2 * \mathrm{ReLU}(\mathrm{BN}(W_1 * \mathbf{x}))),

so that a block that is not needed can drive :math:`\mathcal{F}` to zero.

CIFAR-10 network (Section 4.2): a 3x3 conv with 16 filters, three stages of
:math:`n` basic blocks with 16, 32 and 64 filters on 32x32, 16x16 and 8x8 maps,
global average pooling and a 10-way fully connected layer: :math:`6n+2`
weighted layers. The first conv of the first block of stages 2 and 3 has
stride 2. Where the width doubles, the shortcut is "option A": the input is
sub-sampled and padded with zero channels, so the network has no projection
parameters at all.
"""

from __future__ import annotations

import chainer
import chainer.functions as F

from chainer_nets.blocks import (
    ClassifierHead,
    StagedNetwork,
    bn,
    conv3x3,
    stage_plan,
    zero_pad_shortcut,
)
from chainer_nets.registry import Paper

ARXIV = "1512.03385"
PAPER = "Deep Residual Learning (ResNet)"


class BasicBlock(chainer.Chain):
    r"""Post-activation basic block, :math:`\mathbf{y} = \mathrm{ReLU}(\mathcal{F}(\mathbf{x}) + \mathbf{x})`."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.out_ch, self.stride = out_ch, stride
        with self.init_scope():
            self.conv1 = conv3x3(in_ch, out_ch, stride)
            self.bn1 = bn(out_ch)
            self.conv2 = conv3x3(out_ch, out_ch)
            self.bn2 = bn(out_ch)

    def residual(self, x: chainer.Variable) -> chainer.Variable:
        r""":math:`\mathcal{F}(\mathbf{x}) = \mathrm{BN}(W_2 * \mathrm{ReLU}(\mathrm{BN}(W_1 * \mathbf{x})))`."""
        h = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(h))

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Residual plus (option-A) shortcut, then ReLU."""
        return F.relu(self.residual(x) + zero_pad_shortcut(x, self.out_ch, self.stride))


class ResNetCifar(StagedNetwork):
    """The paper's CIFAR-10 ResNet with 6n+2 weighted layers."""

    def __init__(self, n: int, widths: tuple[int, int, int] = (16, 32, 64), n_classes: int = 10):
        super().__init__()
        with self.init_scope():
            self.conv1 = conv3x3(3, widths[0])
            self.bn1 = bn(widths[0])
            self.blocks = chainer.ChainList()
            for b in stage_plan(widths[0], widths, n):
                self.blocks.append(BasicBlock(b.in_ch, b.out_ch, b.stride))
            self.head = ClassifierHead(widths[-1], n_classes)

    def stem(self, x: chainer.Variable) -> chainer.Variable:
        """conv3x3-BN-ReLU."""
        return F.relu(self.bn1(self.conv1(x)))


# (depth, paper's test error %, paper's parameter count in millions): Table 6.
_VARIANTS = [
    (20, 8.75, "0.27"),
    (32, 7.51, "0.46"),
    (44, 7.17, "0.66"),
    (56, 6.97, "0.85"),
    (110, 6.43, "1.7"),
    (1202, 7.93, "19.4"),
]

_PAPER = Paper(8, PAPER, ARXIV, "resnet")
for _depth, _err, _params in _VARIANTS:
    _PAPER.register(
        f"resnet{_depth}",
        ResNetCifar,
        kwargs={"n": (_depth - 2) // 6},
        recipe="resnet_warmup" if _depth >= 110 else "resnet",
        error=_err,
        paper_params=_params,
        description=f"ResNet-{_depth}, post-activation basic blocks, option-A shortcuts",
    )
