r"""Residual Networks of Residual Networks: Multilevel Residual Networks (Zhang et al., 2016; arXiv 1608.02908).

The paper's question: a ResNet learns each block as a residual of an identity; can the
same idea be applied one level up, making groups of blocks, and the whole body, residual
too? RoR adds shortcuts on top of an existing residual network. RoR-3 has three levels:

* **root level**: one shortcut over the whole body, from the stem output to the end of the
  last stage;
* **middle level**: one shortcut over each of the three stages;
* **final level**: the original shortcuts of the residual blocks.

With :math:`\mathbf{x}_0` the stem output and stage :math:`s` made of blocks
:math:`\mathbf{x} \mapsto h(\mathbf{x}) + b_\ell\, \mathcal{F}_\ell(\mathbf{x})` (final level,
:math:`b_\ell` the stochastic-depth gate),

.. math::  \mathbf{x}_s = G_s(\mathbf{x}_{s-1}) + M_s(\mathbf{x}_{s-1}), \quad s = 1, 2, \qquad
           \mathbf{x}_3 = G_3(\mathbf{x}_2) + M_3(\mathbf{x}_2) + R(\mathbf{x}_0),

where :math:`G_s` is the stage's chain of blocks, :math:`M_s` the middle-level shortcut and
:math:`R` the root-level shortcut. Every stage changes the width (16 -> 16k for the first), so
:math:`M_s` and :math:`R` are projections: a 1x1 convolution with the stage's stride (4 for
the root) followed by batch normalization ("type B").

Body: the pre-activation WRN-:math:`d`-:math:`k` of :mod:`chainer_nets.models.wide_resnet`
(conv3x3(16), three stages of :math:`n = (d-4)/6` wide basic blocks with 16k/32k/64k
filters, the first block of each stage with a 1x1 projection of the shared BN-ReLU,
final BN-ReLU, global average pooling, linear). RoR-3-WRN58-4 is :math:`n = 9`,
:math:`k = 4`.

"+SD": stochastic depth on the final-level blocks (the residual branch of each block is
dropped, the block's own shortcut kept), linear decay over all :math:`L = 3n` blocks to
:math:`p_L = 0.5`; the middle and root shortcuts are never dropped. At test time each
branch is scaled by :math:`p_\ell` (see :mod:`chainer_nets.models.stochastic_depth`).

Parameters: 13,646,938 for RoR-3-WRN58-4 (WRN-58-4: 13,599,450; the four projections add
46,080 weights and 1,408 BN scales and shifts), 13.6M. The 2016 table lists 13.6M; the
paper's own table could not be read here, so its figure is left unset in the registry. A
third-party note on the paper gives 13.3M; if that is the paper's figure it cannot come from
this layout under any counting, since the 3x3 convolutions and the classifier alone (no 1x1
shortcut of any level, no BN) already have 13,541,296 weights.

Unverified against the paper text: BN after the middle/root 1x1 convolutions (it changes
the count by 1,408, invisible at 0.1M), and that SD leaves the middle/root shortcuts alone.

Heads and projections against the 2016 Chainer code (nutszebra/residual_networks_of_residual_networks,
``resnet_of_resnet.py``), which differs in three places: its stem is BN-ReLU-conv3x3 straight
to the first stage's width, its middle/root projections are pre-activation BN-ReLU-conv1x1,
and its classifier is BN-ReLU-conv1x1 applied after global pooling. We keep the WRN-58-4 of
:mod:`~chainer_nets.models.wide_resnet` untouched (16-filter conv stem, final BN-ReLU,
pooling, linear layer), because the paper presents RoR-3-WRN as WRN with two extra shortcut
levels, and we make the extra shortcuts type-B projections as fb.resnet.torch builds them
(``models/resnet.lua``: conv1x1 then BN). The paper's text, which would settle both, could not
be read here; these are our choices, not the reference's. Initialisation: the package default
(:data:`chainer_nets.blocks.FB_RESNET_TORCH`); no authors' code was available to follow.
"""

from __future__ import annotations

import chainer
import chainer.functions as F

from chainer_nets.blocks import (
    PreActHead,
    bn,
    conv1x1,
    conv3x3,
    linear_decay_survival,
    stage_plan,
    stochastic_depth,
)
from chainer_nets.models.wide_resnet import WideBasic
from chainer_nets.registry import Paper

ARXIV = "1608.02908"
PAPER = "Residual Networks of Residual Networks (RoR)"


class RoRBlock(WideBasic):
    r"""Final level: WRN block :math:`h(\mathbf{x}) + b_\ell\,\mathcal{F}_\ell(\mathbf{x})`, with
    :math:`b_\ell` the stochastic-depth gate (scaled by :math:`p_\ell` at test)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, survival: float = 1.0) -> None:
        super().__init__(in_ch, out_ch, stride)
        self.survival = survival

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Block shortcut (identity or projection) plus the gated residual."""
        a = F.relu(self.bn1(x))
        skip = self.skip(x, a)
        r = stochastic_depth(lambda: self.residual(a), self.survival)
        return skip if r is None else skip + r


class Projection(chainer.Chain):
    r"""Middle- and root-level shortcut :math:`M_s`, :math:`R`: 1x1 convolution with stride, then BN."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        with self.init_scope():
            self.conv = conv1x1(in_ch, out_ch, stride)
            self.bn = bn(out_ch)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """BN(W * x) with the stage's stride."""
        return self.bn(self.conv(x))


class RoRWideResNet(chainer.Chain):
    r"""RoR-3 on WRN-:math:`d`-:math:`k`: root, middle and final shortcut levels, optional SD."""

    def __init__(
        self,
        depth: int,
        widen: int,
        p_last: float = 0.5,
        stem: int = 16,
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        with self.init_scope():
            self.conv1 = conv3x3(3, stem)
            self.stages = chainer.ChainList()
            self.middle = chainer.ChainList()
            for index, b in enumerate(stage_plan(stem, widths, n), start=1):
                if b.index == 0:  # a new stage, with its middle-level shortcut
                    self.stages.append(chainer.ChainList())
                    self.middle.append(Projection(b.in_ch, b.out_ch, b.stride))
                p = linear_decay_survival(index, 3 * n, p_last)
                self.stages[b.stage].append(RoRBlock(b.in_ch, b.out_ch, b.stride, p))
            self.root = Projection(stem, widths[-1], 4)
            self.head = PreActHead(widths[-1], n_classes)

    @property
    def survival(self) -> list[float]:
        """Survival probability of every final-level block, first to last."""
        return [block.survival for stage in self.stages for block in stage]

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores (logits) for a batch of 3x32x32 images."""
        x0 = h = self.conv1(x)
        for s, (blocks, middle) in enumerate(zip(self.stages, self.middle, strict=True)):
            g = h
            for block in blocks:
                g = block(g)
            g = g + middle(h)  # middle level: over the stage
            if s == len(self.stages) - 1:
                g = g + self.root(x0)  # root level: over the whole body
            h = g
        return self.head(h)


Paper(18, PAPER, ARXIV, "ror").register(
    "ror3_wrn58_4_sd",
    RoRWideResNet,
    kwargs={"depth": 58, "widen": 4, "p_last": 0.5},
    error=3.77,
    # The paper's table was not readable; the 2016 table says 13.6, and a third-party note on
    # the paper says 13.3 (not adopted: unconfirmed, and below the 13.54M weights of the 3x3
    # convolutions and classifier alone, so no choice of shortcuts could give it).
    paper_params=None,
    description="RoR-3-WRN58-4+SD: root, middle and block shortcuts, SD to p_L = 0.5",
)
