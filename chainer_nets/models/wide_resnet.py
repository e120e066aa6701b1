r"""Wide Residual Networks (Zagoruyko & Komodakis, 2016; arXiv 1605.07146).

The paper's question: is depth the only way up? It widens the pre-activation
basic block by a factor :math:`k` and makes the network far shallower.
WRN-:math:`d`-:math:`k` has a 3x3 conv with 16 filters, then three stages of
:math:`n = (d-4)/6` blocks with :math:`16k`, :math:`32k`, :math:`64k` filters,
each block

.. math::  \mathbf{x}_{l+1} = s(\mathbf{x}_l) + W_2 * \mathrm{drop}\big(\mathrm{ReLU}(\mathrm{BN}(
           W_1 * \mathrm{ReLU}(\mathrm{BN}(\mathbf{x}_l))))\big),

where :math:`s` is the identity, or a 1x1 convolution of the shared
pre-activation where the width or resolution changes, and "drop" is dropout
(p = 0.3) in the "-dropout" variants only. BN-ReLU, global average pooling and
a linear layer finish the network.

Initialisation follows the authors' Torch code (szagoruyko/wide-residual-networks,
``models/utils.lua``): He-normal over the *input* fan since commit ea02518 ("fix MSRA init",
2016-09-08; before it the output fan), and batch-normalization scales left at Torch's default
``reset()``, uniform in [0, 1) (the code sets no BN init). :data:`INIT` states it.

Reported errors (registry): the authors' README, "Test error (%, flip/translation
augmentation, meanstd normalization, median of 5 runs)", lists WRN-28-10 at 4.00% and
WRN-28-10-dropout at 3.89% on CIFAR-10 (before its November 2016 update, with ZCA whitening,
4.17% and a dropout figure we did not use). It gives no CIFAR-10 figure for WRN-16-8 or
WRN-40-4, and we could not read the paper's tables here, so those two carry no target
accuracy; their parameter counts (11.0M, 8.9M) are what this layout gives.
"""

from __future__ import annotations

import chainer
import chainer.functions as F

from chainer_nets.blocks import (
    TORCH_FAN_IN,
    PreActHead,
    StagedNetwork,
    bn,
    conv1x1,
    conv3x3,
    init_scheme,
    stage_plan,
)
from chainer_nets.registry import Paper

ARXIV = "1605.07146"
PAPER = "Wide Residual Networks (WRN)"

#: Fan-in He-normal convolutions, U(0, 1) BN scales: the authors' Torch code (see above).
INIT = TORCH_FAN_IN


class WideBasic(chainer.Chain):
    """Pre-activation wide basic block with optional dropout between the convolutions."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = dropout
        self.project = in_ch != out_ch or stride != 1
        with self.init_scope():
            self.bn1 = bn(in_ch)
            self.conv1 = conv3x3(in_ch, out_ch, stride)
            self.bn2 = bn(out_ch)
            self.conv2 = conv3x3(out_ch, out_ch)
            if self.project:
                self.shortcut = conv1x1(in_ch, out_ch, stride)

    def residual(self, a: chainer.Variable) -> chainer.Variable:
        r""":math:`W_2 * \mathrm{drop}(\mathrm{ReLU}(\mathrm{BN}_2(W_1 * a)))` of the pre-activation ``a``."""
        h = F.relu(self.bn2(self.conv1(a)))
        if self.dropout > 0:
            h = F.dropout(h, self.dropout)  # a no-op unless chainer.config.train
        return self.conv2(h)

    def skip(self, x: chainer.Variable, a: chainer.Variable) -> chainer.Variable:
        """The shortcut :math:`s`: identity, or a 1x1 projection of the pre-activation ``a``."""
        return self.shortcut(a) if self.project else chainer.as_variable(x)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Shortcut plus the residual of the shared pre-activation ``a = ReLU(BN_1(x))``."""
        a = F.relu(self.bn1(x))
        return self.skip(x, a) + self.residual(a)


class WideResNet(StagedNetwork):
    """WRN-d-k for CIFAR."""

    def __init__(self, depth: int, widen: int, dropout: float = 0.0, n_classes: int = 10) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        with self.init_scope(), init_scheme(INIT):
            self.conv1 = conv3x3(3, 16)
            self.blocks = chainer.ChainList()
            for b in stage_plan(16, widths, n):
                self.blocks.append(WideBasic(b.in_ch, b.out_ch, b.stride, dropout))
            self.head = PreActHead(widths[-1], n_classes)

    def stem(self, x: chainer.Variable) -> chainer.Variable:
        """One conv3x3 (the first unit pre-activates it)."""
        return self.conv1(x)


# name, depth, k, dropout, CIFAR-10 error % (authors' README, meanstd, median of 5 runs; None
# where the README gives none), parameter count (M) of the layout.
_PAPER = Paper(15, PAPER, ARXIV, "wrn")
for _name, _depth, _k, _drop, _err, _params in [
    ("wrn16_8", 16, 8, 0.0, None, "11.0"),
    ("wrn40_4", 40, 4, 0.0, None, "8.9"),
    ("wrn28_10", 28, 10, 0.0, 4.00, "36.5"),
    ("wrn28_10_dropout", 28, 10, 0.3, 3.89, "36.5"),
]:
    _source = (
        f"; {_err}% error: authors' README (meanstd, median of 5 runs)"
        if _err is not None
        else "; no CIFAR-10 error in the authors' README, none set"
    )
    _PAPER.register(
        _name,
        WideResNet,
        kwargs={"depth": _depth, "widen": _k, "dropout": _drop},
        error=_err,
        paper_params=_params,
        description=f"WRN-{_depth}-{_k}" + (f", dropout {_drop}" if _drop else "") + _source,
    )
