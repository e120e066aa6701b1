r"""Weighted Residuals for Very Deep Networks (Shen & Zeng, 2016; arXiv 1605.08831).

The paper's question: why does the original residual block struggle beyond a
thousand layers? Two reasons it gives: the ReLU *after* the addition makes
every block's contribution non-negative in effect (ReLU and element-wise
addition do not mix well), and at initialisation a very deep stack of
residuals adds up to a signal that grows with depth. Its answer is to end the
residual branch with its own ReLU, drop the ReLU after the addition, and scale
every branch by a learned scalar :math:`\lambda_l` that may be negative:

.. math::  \mathbf{x}_{l+1} = \mathbf{x}_l + \lambda_l\,\mathcal{F}(\mathbf{x}_l),
           \qquad \mathcal{F} = \mathrm{ReLU}(\mathrm{BN}(W_2 *
                  \mathrm{ReLU}(\mathrm{BN}(W_1 * \mathbf{x})))),
           \qquad \lambda_l \in [-1, 1].

With :math:`\lambda_l = 0` at initialisation the whole network starts as its
stem plus the classifier, whatever its depth; each block then learns how much
(and with which sign) to contribute. The weights :math:`\lambda_l` are trained
with their own, smaller learning rate and projected back into :math:`[-1, 1]`
after every step ("projected SGD"). :meth:`WeightedResNet.configure_optimizer`
sets both up.

:math:`\lambda`'s rate: 1e-3 while the network's is 0.1, i.e. 1/100 of it, and it follows
the network's schedule (divided by 10 at the same milestones: 1e-3, 1e-4, 1e-5). The paper's
text could not be read here. The 2016 Chainer code (nutszebra/weighted_residual_net,
``nutszebra_optimizer.py``, ``OptimizerWeightedRes``) gives :math:`\lambda` its own
optimizer at 1e-3 and, at each milestone, means to set every optimizer's rate, :math:`\lambda`'s
included, to the network's rate divided by 10; as written it reads ``self.optimizer.lr`` of an
object whose ``optimizer`` is ``None``, so it cannot pass the first milestone, and had it
worked it would have *raised* :math:`\lambda`'s rate to the network's. We keep the ratio of
its starting rates for the whole run, which is what dividing both by 10 would give.

CIFAR-10 network: as ResNet (a 3x3 conv with 16 filters + BN-ReLU, three
stages of :math:`n` blocks at 16, 32, 64 filters, global average pooling, a
linear layer), with depth :math:`6n + 4` counted as in the 2016 Chainer code
(1192 layers: :math:`n = 198`). Where the width doubles the first conv has
stride 2 and the shortcut is option A (sub-sampling plus zero channels).
"WResNet-d", the 1192-layer model reported at 95.3%, adds stochastic depth
(block :math:`l` of :math:`L` survives training with probability
:math:`p_l = 1 - \tfrac{l}{L}(1 - p_L)`, :math:`p_L = 0.5`; at test time its
branch is scaled by :math:`p_l`). Parameters: 19,138,096 convolution/linear
weights (19.1M, the 2016 table's figure, which counts weights only).
"""

from __future__ import annotations

import chainer
import chainer.functions as F
from chainer import initializers

from chainer_nets.blocks import (
    ClassifierHead,
    StagedNetwork,
    bn,
    conv3x3,
    linear_decay_survival,
    stage_plan,
    stochastic_depth,
    zero_pad_shortcut,
)
from chainer_nets.registry import Paper

ARXIV = "1605.08831"
PAPER = "Weighted Residuals for Very Deep Networks (WResNet)"

#: Learning rate of every residual weight lambda while the network's is the recipe's base rate;
#: it follows the network's schedule in proportion (1/100 of it at the recipe's 0.1).
LAMBDA_LR = 0.001
#: lambda is projected into [-LAMBDA_BOUND, LAMBDA_BOUND] after every update.
LAMBDA_BOUND = 1.0


class ProjectToInterval:
    """Update-rule hook (run after the update): clip a parameter into ``[low, high]``."""

    name = "ProjectToInterval"
    timing = "post"

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def __call__(self, rule: chainer.UpdateRule, param: chainer.Parameter) -> None:
        """Project ``param`` in place."""
        xp = chainer.backend.get_array_module(param.array)
        xp.clip(param.array, self.low, self.high, out=param.array)


class ScaledLearningRate:
    """Update-rule hook (run before the update): this parameter's rate is ``ratio`` times the
    optimizer's current rate, so the schedule divides it along with everyone else's."""

    name = "ScaledLearningRate"
    timing = "pre"

    def __init__(self, optimizer: chainer.Optimizer, ratio: float) -> None:
        self.optimizer, self.ratio = optimizer, ratio

    def __call__(self, rule: chainer.UpdateRule, param: chainer.Parameter) -> None:
        """Set the rule's rate from the optimizer's (a host-side float, no device access)."""
        rule.hyperparam.lr = self.ratio * self.optimizer.lr


class WeightedResidualBlock(chainer.Chain):
    r"""Weighted residual block, :math:`\mathbf{x}_{l+1} = s(\mathbf{x}_l) + \lambda_l\,\mathcal{F}(\mathbf{x}_l)`.

    ``survival`` < 1 adds stochastic depth: in training the whole branch is skipped
    with probability 1 - ``survival``; at test time it is scaled by ``survival``.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, survival: float = 1.0) -> None:
        super().__init__()
        self.out_ch, self.stride, self.survival = out_ch, stride, survival
        with self.init_scope():
            self.conv1 = conv3x3(in_ch, out_ch, stride)
            self.bn1 = bn(out_ch)
            self.conv2 = conv3x3(out_ch, out_ch)
            self.bn2 = bn(out_ch)
            self.lam = chainer.Parameter(initializers.Zero(), (1,))  # lambda_l, starts at 0

    def residual(self, x: chainer.Variable) -> chainer.Variable:
        r""":math:`\mathcal{F}(\mathbf{x}) = \mathrm{ReLU}(\mathrm{BN}(W_2 * \mathrm{ReLU}(\mathrm{BN}(W_1 * \mathbf{x}))))`."""
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)))

    def weighted_residual(self, x: chainer.Variable) -> chainer.Variable:
        r""":math:`\lambda_l\,\mathcal{F}(\mathbf{x})`."""
        h = self.residual(x)
        return F.broadcast_to(F.reshape(self.lam, (1, 1, 1, 1)), h.shape) * h

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Shortcut plus lambda times the (gated) residual (no ReLU after the addition)."""
        x = chainer.as_variable(x)
        shortcut = zero_pad_shortcut(x, self.out_ch, self.stride)
        h = stochastic_depth(lambda: self.weighted_residual(x), self.survival)
        return shortcut if h is None else shortcut + h


def linear_survival(n_blocks: int, p_last: float) -> list[float]:
    """Survival probability of blocks 1..L decaying linearly from 1 to ``p_last``."""
    return [linear_decay_survival(i, n_blocks, p_last) for i in range(1, n_blocks + 1)]


class WeightedResNet(StagedNetwork):
    """WResNet for CIFAR: conv3x3(16)-BN-ReLU, three stages of weighted residual blocks, GAP, FC."""

    def __init__(
        self,
        n: int,
        widths: tuple[int, int, int] = (16, 32, 64),
        p_last: float = 1.0,
        lambda_lr: float = LAMBDA_LR,
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        self.lambda_lr = lambda_lr
        survival = linear_survival(3 * n, p_last)
        with self.init_scope():
            self.conv1 = conv3x3(3, widths[0])
            self.bn1 = bn(widths[0])
            self.blocks = chainer.ChainList()
            for b, p in zip(stage_plan(widths[0], widths, n), survival, strict=True):
                self.blocks.append(WeightedResidualBlock(b.in_ch, b.out_ch, b.stride, p))
            self.head = ClassifierHead(widths[-1], n_classes)

    def stem(self, x: chainer.Variable) -> chainer.Variable:
        """conv3x3-BN-ReLU."""
        return F.relu(self.bn1(self.conv1(x)))

    def residual_weights(self) -> list[chainer.Parameter]:
        """Every block's lambda."""
        return [block.lam for block in self.blocks]

    def configure_optimizer(self, optimizer: chainer.Optimizer, recipe: object = None) -> None:
        """Give every lambda ``lambda_lr / base`` times the network's rate, and project it into
        [-1, 1] after each step.

        Called by the trainer after ``optimizer.setup(model)``; ``base`` is the recipe's ``lr``
        (the optimizer's current rate without a recipe). The schedule changes
        ``optimizer.lr``; before each update a hook sets lambda's rate from it, so lambda's
        rate is divided at the same milestones (1e-3, 1e-4, 1e-5 with the recipe's 0.1).
        """
        base = float(getattr(recipe, "lr", None) or optimizer.lr)
        for lam in self.residual_weights():
            lam.update_rule.hyperparam.lr = self.lambda_lr
            lam.update_rule.add_hook(ScaledLearningRate(optimizer, self.lambda_lr / base))
            lam.update_rule.add_hook(ProjectToInterval(-LAMBDA_BOUND, LAMBDA_BOUND), timing="post")


Paper(17, PAPER, ARXIV, "weighted_residual").register(
    "wresnet_d1192",
    WeightedResNet,
    kwargs={"n": (1192 - 4) // 6, "p_last": 0.5},
    paper_accuracy=95.3,
    # The 2016 table's figure (weights only); the paper prints no parameter count we could check.
    paper_params="19.1",
    params_counting="weights",
    description="WResNet-d 1192: weighted residual blocks (n=198), stochastic depth p_L=0.5",
)
