r"""Swapout: Learning an ensemble of deep architectures (Singh, Hoiem, Forsyth, 2016; arXiv 1605.06465).

The paper's question: dropout drops *units*, stochastic depth drops whole *layers*; is there
a richer family of sub-networks to sample and average? Swapout lets every unit of a
residual block independently report one of :math:`0`, :math:`\mathbf{x}`,
:math:`F(\mathbf{x})` or :math:`\mathbf{x} + F(\mathbf{x})`:

.. math::  \mathbf{y} = \Theta_1 \odot \mathbf{x} + \Theta_2 \odot F(\mathbf{x}),
           \qquad \Theta_i \sim \mathrm{Bernoulli}(\theta_i)\ \text{i.i.d. per unit} \quad (Eq. 4),

with :math:`\Theta_1, \Theta_2` independent tensors of the shape of :math:`\mathbf{x}`
(sample, channel, row, column). :math:`\Theta_1 = 0` is dropout on a feed-forward layer,
:math:`\Theta_1 = \Theta_2` shared over a whole layer is stochastic depth, and
:math:`\Theta_1 = \Theta_2 = 1` is a ResNet. The masks are *not* rescaled in training.

Schedule "Linear(1, 0.5)": :math:`\theta_1 = \theta_2` fall linearly from 1 at the first
unit to 0.5 at the last.

Inference, two ways (Sec. 4): *deterministic* replaces each mask by its expectation,
:math:`\mathbf{y} = \theta_1\mathbf{x} + \theta_2 F(\mathbf{x})`; *stochastic* keeps sampling
the masks (batch normalization in test mode) and averages the predicted class
distributions of 30 passes. The paper finds stochastic inference better, because the
expectation does not commute with batch normalization and the ReLUs, and reports its
numbers with it. Here the mode is the model's ``inference`` attribute ("stochastic" by
default, as in the paper), which ``chainer.config.swapout_inference`` overrides, e.g.
``with chainer.using_config("swapout_inference", "deterministic"): ...``. In stochastic
mode the forward pass returns :math:`\log \frac{1}{S}\sum_s \mathrm{softmax}(z_s)`, whose
softmax is the averaged distribution, so accuracy and cross-entropy read it directly.

Network: "v2(:math:`d`) W×:math:`k`" is the pre-activation ResNet of the identity-mappings
paper with *basic* (two 3x3 conv) units, :math:`d = 6n + 2` layers, every width multiplied by
:math:`k`: conv3x3(16k), three stages of :math:`n` units with 16k/32k/64k filters, BN-ReLU,
global average pooling, linear. Basic, not bottleneck, because (i) the depths 20 and 32
are of the form :math:`6n+2` and 32 is not of the bottleneck form :math:`9n+2`, and (ii) the
paper's 7.43M parameters for v2(32) W×4 is what basic units give (bottleneck units at any
width that hits it would not have 32 layers). As in the authors' pre-activation code, the
first unit of a stage shares its BN-ReLU with a 1x1 projection shortcut (stride 2 where the
resolution halves); swapout then mixes that projected input with :math:`F`.

Unverified: the paper's parameter figures (7.43M for v2(32) W×4) and whether the stem conv is
widened too (here it is: 16k filters; with a 16-filter stem v2(32) W×4 has 7.40M).
"""

from __future__ import annotations

import math

import chainer
import chainer.functions as F

from chainer_nets.blocks import PreActHead, StagedNetwork, bernoulli_mask, conv3x3, stage_plan
from chainer_nets.models.wide_resnet import WideBasic
from chainer_nets.registry import Paper

ARXIV = "1605.06465"
PAPER = "Swapout: Learning an ensemble of deep architectures"

INFERENCE_MODES = ("stochastic", "deterministic")


def _sampling() -> bool:
    """Whether swapout masks are drawn now: in training, and inside a stochastic-inference pass."""
    return bool(chainer.config.train or getattr(chainer.config, "swapout_sample", False))


def swapout(
    x: chainer.Variable, fx: chainer.Variable, theta1: float, theta2: float
) -> chainer.Variable:
    r"""Eq. 4, :math:`\Theta_1 \odot \mathbf{x} + \Theta_2 \odot F(\mathbf{x})` with per-unit
    Bernoulli masks while sampling, else its expectation :math:`\theta_1\mathbf{x} + \theta_2 F(\mathbf{x})`."""
    x, fx = chainer.as_variable(x), chainer.as_variable(fx)
    if not _sampling():
        return theta1 * x + theta2 * fx
    # drawn on the arrays' device, in single precision on CuPy
    return x * bernoulli_mask(fx, theta1) + fx * bernoulli_mask(fx, theta2)


def linear_schedule(index: int, total: int, start: float = 1.0, end: float = 0.5) -> float:
    """ "Linear(start, end)": ``start`` at unit 1, ``end`` at unit ``total``, linear in between."""
    if total == 1:
        return end
    return start + (end - start) * (index - 1) / (total - 1)


class SwapoutUnit(WideBasic):
    r"""Pre-activation basic unit whose output is Eq. 4, :math:`\Theta_1 \odot \mathbf{x} + \Theta_2 \odot F(\mathbf{x})`.

    The convolutions, :math:`F` (``residual``) and the shortcut (``skip``) are those of the
    wide basic block, without dropout; only the way the two paths are combined differs.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, theta1: float, theta2: float) -> None:
        super().__init__(in_ch, out_ch, stride)
        self.theta1, self.theta2 = theta1, theta2

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Swap between the (projected) input and the residual, unit by unit."""
        a = F.relu(self.bn1(x))
        return swapout(self.skip(x, a), self.residual(a), self.theta1, self.theta2)


class SwapoutResNet(StagedNetwork):
    """Swapout v2(6n+2) W×k: pre-activation basic units with the Linear(start, end) schedule."""

    def __init__(
        self,
        depth: int,
        widen: int,
        start: float = 1.0,
        end: float = 0.5,
        inference: str = "stochastic",
        samples: int = 30,
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"v2 depth must be 6n+2, got {depth}")
        if inference not in INFERENCE_MODES:
            raise ValueError(f"inference must be one of {INFERENCE_MODES}, got {inference!r}")
        self.inference, self.samples = inference, samples
        n = (depth - 2) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        with self.init_scope():
            self.conv1 = conv3x3(3, widths[0])
            self.blocks = chainer.ChainList()
            for index, b in enumerate(stage_plan(widths[0], widths, n), start=1):
                theta = linear_schedule(index, 3 * n, start, end)
                self.blocks.append(SwapoutUnit(b.in_ch, b.out_ch, b.stride, theta, theta))
            self.head = PreActHead(widths[-1], n_classes)

    def stem(self, x: chainer.Variable) -> chainer.Variable:
        """One conv3x3 (the first unit pre-activates it)."""
        return self.conv1(x)

    def logits(self, x: chainer.Variable) -> chainer.Variable:
        """One pass: masks sampled in training (or while sampling), expectations otherwise."""
        return StagedNetwork.forward(self, x)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Logits in training and deterministic inference; log of the mean softmax of
        ``samples`` sampled passes in stochastic inference."""
        mode = getattr(chainer.config, "swapout_inference", self.inference)
        if chainer.config.train or mode == "deterministic":
            return self.logits(x)
        if mode != "stochastic":
            raise ValueError(f"swapout_inference must be one of {INFERENCE_MODES}, got {mode!r}")
        with chainer.using_config("swapout_sample", True):
            logp = F.stack([F.log_softmax(self.logits(x)) for _ in range(self.samples)])
        return F.logsumexp(logp, axis=0) - math.log(self.samples)


# name, depth, k, paper's CIFAR-10 error % (Table 2), paper's params (M) where we have it.
_PAPER = Paper(14, PAPER, ARXIV, "swapout")
for _name, _depth, _k, _err, _params in [
    ("swapout_v2_20_w4", 20, 4, 5.09, None),
    ("swapout_v2_32_w4", 32, 4, 4.76, "7.43"),
]:
    _PAPER.register(
        _name,
        SwapoutResNet,
        description=f"Swapout v2({_depth}) Wx{_k}, Linear(1, 0.5), stochastic inference (30)",
        kwargs={"depth": _depth, "widen": _k},
        error=_err,
        paper_params=_params,
    )
