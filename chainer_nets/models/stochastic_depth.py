r"""Deep Networks with Stochastic Depth (Huang, Sun, Liu, Sedra, Weinberger, 2016; arXiv 1603.09382).

The paper's question: very deep ResNets are slow to train and their gradients
vanish through many blocks, yet the depth helps at test time. Can a network be
*short* while it trains and *deep* when it is used? Each residual block
:math:`\ell` is kept in a mini-batch with probability :math:`p_\ell` and
otherwise replaced by its shortcut. With a Bernoulli gate
:math:`b_\ell \in \{0, 1\}`, :math:`\Pr(b_\ell = 1) = p_\ell`,

.. math::  H_\ell = \mathrm{ReLU}\big(b_\ell\, f_\ell(H_{\ell-1}) + \mathrm{id}(H_{\ell-1})\big)
           \qquad \text{(training, Eq. 2)},

so a dropped block passes its input through (the input is already
non-negative, so the ReLU leaves it unchanged). At test time every block is
present and its branch is weighted by how often it was present in training,

.. math::  H_\ell^{\mathrm{test}} = \mathrm{ReLU}\big(p_\ell\, f_\ell(H_{\ell-1}^{\mathrm{test}})
           + \mathrm{id}(H_{\ell-1}^{\mathrm{test}})\big) \qquad \text{(Eq. 5)}.

The survival probabilities decay linearly with depth from :math:`p_0 = 1` (the
input) to :math:`p_L = 0.5` for the last of the :math:`L` blocks (Eq. 4),

.. math::  p_\ell = 1 - \frac{\ell}{L}(1 - p_L),

so the expected depth of ResNet-110 (:math:`L = 54`) in training is about 40 blocks.
The gate and the schedule are :func:`chainer_nets.blocks.stochastic_depth` and
:func:`chainer_nets.blocks.linear_decay_survival`, shared with RoR.

The network is the original post-activation CIFAR ResNet (:mod:`chainer_nets.models.resnet`),
following the authors' Torch code (yueatsprograms/Stochastic_Depth, ``ResidualDrop.lua`` and
``main.lua``): conv3x3(16)-BN-ReLU, three stages of :math:`n` blocks
conv-BN-ReLU-conv-BN with 16/32/64 filters, the stride on the first conv, and where the
resolution halves a shortcut that is a 2x2 *average pooling* with stride 2 followed by zero
channel padding (the ResNet paper's option A sub-samples instead); ReLU after the
addition; global average pooling and a linear layer. One gate decision per block per
mini-batch, and the schedule indexes blocks :math:`\ell = 1..L`, as the official code does.

Departure: the official convolutions have a bias (initialised to 0) in front of every
batch normalization; here they have none, as everywhere in this package. A bias before BN
is cancelled by the batch mean in training, so this changes only the parameter count
(by 4,048 scalars for ResNet-110, invisible at the paper's 1.7M).

Initialisation follows the same code: ``nninit.kaiming`` with the ReLU gain, i.e. He-normal
over the *input* fan, and batch-normalization scales at cuDNN-Torch's default ``reset()``,
uniform in [0, 1) (:data:`INIT`).

Target: the README of the official code reports 5.25% for ResNet-110 as "test error
(selected by best validation error)": ``main.lua`` trains on 45,000 images, holds out 5,000
for validation, evaluates both sets every epoch and the figure is the test error at the epoch
with the lowest validation error. ``chainer_nets.train`` reports the test error after the
last iteration, trained on all 50,000 images by default. The two differ in both the data and
the selection: best-of-epochs selection can only lower the figure (by roughly the epoch-to-
epoch spread of the test error late in training, a few tenths of a percent), the 5,000 extra
training images usually lower ours. A like-for-like comparison needs ``--val-split 5000`` and
the test error at the best validation epoch; the last-iteration number answers a different,
stricter question.
"""

from __future__ import annotations

import chainer
import chainer.functions as F

from chainer_nets.blocks import (
    TORCH_FAN_IN,
    ClassifierHead,
    StagedNetwork,
    bn,
    conv3x3,
    init_scheme,
    linear_decay_survival,
    stage_plan,
    stochastic_depth,
)
from chainer_nets.models.resnet import BasicBlock
from chainer_nets.registry import Paper

ARXIV = "1603.09382"
PAPER = "Deep Networks with Stochastic Depth"

#: Fan-in He-normal convolutions, U(0, 1) BN scales: yueatsprograms/Stochastic_Depth.
INIT = TORCH_FAN_IN


def avg_pool_pad_shortcut(x: chainer.Variable, out_ch: int, stride: int) -> chainer.Variable:
    """The official code's shortcut: ``stride`` x ``stride`` average pooling, then zero channels."""
    if stride > 1:
        x = F.average_pooling_2d(x, stride, stride)
    extra = out_ch - x.shape[1]
    if extra > 0:
        xp = chainer.backend.get_array_module(x)
        zeros = xp.zeros((x.shape[0], extra) + x.shape[2:], dtype=x.dtype)
        x = F.concat((x, zeros), axis=1)
    return x


class StochasticDepthBlock(BasicBlock):
    r"""Post-activation basic block with a survival gate, Eq. 2 (train) and Eq. 5 (test):
    :math:`H_\ell = \mathrm{ReLU}(b_\ell f_\ell(H_{\ell-1}) + \mathrm{id}(H_{\ell-1}))`."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, survival: float) -> None:
        super().__init__(in_ch, out_ch, stride)
        self.survival = survival

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Shortcut plus the gated (train) or ``survival``-scaled (test) residual, then ReLU."""
        h = avg_pool_pad_shortcut(x, self.out_ch, self.stride)
        r = stochastic_depth(lambda: self.residual(x), self.survival)
        return chainer.as_variable(h) if r is None else F.relu(h + r)


class StochasticDepthResNet(StagedNetwork):
    r"""CIFAR ResNet with :math:`6n+2` layers and linearly decaying survival probabilities (Eq. 4)."""

    def __init__(
        self,
        n: int,
        p_last: float = 0.5,
        widths: tuple[int, int, int] = (16, 32, 64),
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        with self.init_scope(), init_scheme(INIT):
            self.conv1 = conv3x3(3, widths[0])
            self.bn1 = bn(widths[0])
            self.blocks = chainer.ChainList()
            for index, b in enumerate(stage_plan(widths[0], widths, n), start=1):
                p = linear_decay_survival(index, 3 * n, p_last)
                self.blocks.append(StochasticDepthBlock(b.in_ch, b.out_ch, b.stride, p))
            self.head = ClassifierHead(widths[-1], n_classes)

    @property
    def survival(self) -> list[float]:
        """The survival probability :math:`p_\\ell` of every block, first to last."""
        return [block.survival for block in self.blocks]

    def stem(self, x: chainer.Variable) -> chainer.Variable:
        """conv3x3-BN-ReLU."""
        return F.relu(self.bn1(self.conv1(x)))


# name, depth, paper's CIFAR-10+ test error % (Table 1 / abstract), paper's params (M).
_PAPER = Paper(13, PAPER, ARXIV, "stochastic_depth")
for _name, _depth, _err, _params in [
    ("sd_resnet110", 110, 5.25, "1.7"),
    ("sd_resnet1202", 1202, 4.91, "19.4"),
]:
    _selection = (
        " at the epoch of best validation error (45k/5k split, official README); "
        "ours is the last iteration's, on all 50k unless --val-split is given"
    )
    _PAPER.register(
        _name,
        StochasticDepthResNet,
        kwargs={"n": (_depth - 2) // 6, "p_last": 0.5},
        error=_err,
        paper_params=_params,
        description=f"ResNet-{_depth} with stochastic depth, linear decay to p_L = 0.5; "
        f"{_err}% is the paper's test error" + (_selection if _depth == 110 else ""),
    )
