r"""Deep Pyramidal Residual Networks with Separated Stochastic Depth (Yamada, Iwamura, Kise, 2016;
arXiv 1612.01230).

The paper's question: stochastic depth (drop a whole residual branch with probability
:math:`1 - p_\ell`, scale it by :math:`p_\ell` at test time) helps ResNets, but applied
naively to a PyramidNet ("PyramidDrop") it does not help. Why, and what does? In a
pyramidal unit the branch output :math:`\mathcal{F}_\ell(\mathbf{x})` has more channels
than the input: its first :math:`C_{\ell-1}` channels are added to the input, the
remaining :math:`C_\ell - C_{\ell-1}` to the zero padding of the shortcut. Dropping the
branch therefore also drops the *only* content of the new channels. The paper splits the
branch output along the channels,

.. math::  \mathcal{F}_\ell = \big[\mathcal{F}_\ell^{(1)};\ \mathcal{F}_\ell^{(2)}\big],
           \qquad \mathcal{F}^{(1)}: C_{\ell-1}\ \text{existing channels},\quad
           \mathcal{F}^{(2)}: C_\ell - C_{\ell-1}\ \text{new channels},

and gives each part its own Bernoulli gate, drawn independently with the same survival
probability :math:`p_\ell`,

.. math::  \mathbf{x}_\ell = \big[\,\mathrm{pool}(\mathbf{x}_{\ell-1}) + b^{(1)}_\ell\,
           \mathcal{F}^{(1)}_\ell;\ \ b^{(2)}_\ell\, \mathcal{F}^{(2)}_\ell\,\big],
           \qquad b^{(i)}_\ell \sim \mathrm{Bernoulli}(p_\ell)\ \text{(training)},

so the new channels of a unit survive even when its update of the old ones is dropped
(and the other way round). At test time both parts are present and scaled by their
expected presence, :math:`\mathbf{x}_\ell = [\mathrm{pool}(\mathbf{x}_{\ell-1}); \mathbf{0}]
+ p_\ell\, \mathcal{F}_\ell`. The survival probability decays linearly with the unit index,
:math:`p_\ell = 1 - \frac{\ell}{L}(1 - p_L)` with :math:`p_L = 0.5`, as in stochastic depth.

Implementation, following the authors' Torch code (AkTgWrNsKnKPP/PyramidNet_with_Stochastic_Depth,
``pyramidsepdrop.lua`` and the ``StochasticDrop`` module it uses): the unit is the PyramidNet
basic unit of :mod:`chainer_nets.models.pyramidnet`. The authors write its second convolution and
BN as two (to the old and to the new channels); that is the same map and the same parameters as
one convolution and BN whose output is split by channel, which is what is done here. A dropped part is
multiplied by zero: the branch is still computed (as in the authors' code), so its
batch-normalization statistics are updated and its parameters get a zero gradient. The gates
are drawn on the arrays' own device (:func:`chainer_nets.blocks.bernoulli_mask`), one pair per
unit per mini-batch, and never read back to the host, so a GPU step is not synchronised once per unit.
``separate=False`` gives the naive PyramidDrop baseline (one gate for the whole branch).
"""

from __future__ import annotations

from typing import Any

import chainer

from chainer_nets.blocks import bernoulli_mask, linear_decay_survival
from chainer_nets.models.pyramidnet import PyramidNet, PyramidUnit, pyramid_shortcut
from chainer_nets.registry import ModelInfo, register

ARXIV = "1612.01230"
PAPER = "Deep Pyramidal Residual Networks with Separated Stochastic Depth"


def separated_gates(
    xp: Any, survival: float, n_old: int, n_new: int, separate: bool, dtype: Any
) -> Any:
    r"""Per-channel gate :math:`[b^{(1)} \mathbf{1}_{C_{\ell-1}};\ b^{(2)} \mathbf{1}_{C_\ell - C_{\ell-1}}]`
    of shape ``(1, n_old + n_new, 1, 1)``, drawn with the array module ``xp`` (on the device
    for CuPy) through :func:`chainer_nets.blocks.bernoulli_mask`.

    ``separate=False`` draws one gate for all channels (PyramidDrop).
    """
    draws = bernoulli_mask(xp.empty(2 if separate else 1, dtype=dtype), survival)
    if not separate:
        return xp.broadcast_to(draws.reshape(1, 1, 1, 1), (1, n_old + n_new, 1, 1))
    old = xp.broadcast_to(draws[0:1], (n_old,))
    new = xp.broadcast_to(draws[1:2], (n_new,))
    return xp.concatenate((old, new)).reshape(1, n_old + n_new, 1, 1)


class SeparatedDropUnit(chainer.Chain):
    r"""A pyramidal unit whose branch is gated by two independent survival gates (training)
    or scaled by :math:`p_\ell` (test): :math:`\mathbf{x}_\ell = [\mathrm{pool}(\mathbf{x}); \mathbf{0}]
    + g \odot \mathcal{F}(\mathbf{x})`."""

    def __init__(self, unit: PyramidUnit, survival: float, separate: bool = True) -> None:
        super().__init__()
        self.survival, self.separate = survival, separate
        self.in_ch, self.out_ch, self.stride = unit.in_ch, unit.out_ch, unit.stride
        with self.init_scope():
            self.unit = unit

    def gate(self, xp: Any, dtype: Any) -> Any:
        """This mini-batch's channel gate (training mode), on the array module ``xp``."""
        n_old = min(self.in_ch, self.out_ch)
        return separated_gates(xp, self.survival, n_old, self.out_ch - n_old, self.separate, dtype)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Shortcut plus the gated (train) or ``survival``-scaled (test) branch."""
        r = self.unit.residual(x)
        if chainer.config.train:
            if self.survival < 1.0:
                r = r * self.gate(chainer.backend.get_array_module(r), r.dtype)
        elif self.survival < 1.0:
            r = r * self.survival
        return r + pyramid_shortcut(x, self.out_ch, self.stride)


class PyramidSepDrop(PyramidNet):
    r"""Additive PyramidNet whose units carry separated stochastic depth, :math:`p_L` = ``p_last``."""

    def __init__(
        self,
        depth: int,
        alpha: float,
        bottleneck: bool = False,
        p_last: float = 0.5,
        separate: bool = True,
        n_classes: int = 10,
    ) -> None:
        self.p_last, self.separate = p_last, separate
        super().__init__(depth, alpha, bottleneck=bottleneck, n_classes=n_classes)

    def make_unit(
        self, unit_cls: type, in_ch: int, width: int, stride: int, index: int, total: int
    ) -> SeparatedDropUnit:
        """The pyramidal unit ``index`` of ``total``, wrapped with its survival gates."""
        unit = unit_cls(in_ch, width, stride, **self.unit_kwargs)
        p = linear_decay_survival(index, total, self.p_last)
        return SeparatedDropUnit(unit, p, self.separate)

    @property
    def survival(self) -> list[float]:
        r"""The survival probability :math:`p_\ell` of every unit, first to last."""
        return [unit.survival for unit in self.units]


# name, depth, alpha, CIFAR-10 accuracy % attributed to the paper, description.
_VARIANTS = [
    (
        "pyramidnet110_a270_sepdrop",
        110,
        270,
        None,
        "PyramidSepDrop-110, alpha = 270: the authors' released configuration "
        "(their code's per-stage alpha 90)",
    ),
    (
        "pyramidnet182_a150_sepdrop",
        182,
        150,
        96.69,
        "PyramidSepDrop-182, alpha = 150: the network of the paper's first version "
        "(96.69% as quoted by the 2016 index)",
    ),
]

for _name, _depth, _alpha, _acc, _desc in _VARIANTS:
    register(
        ModelInfo(
            name=_name,
            factory=PyramidSepDrop,
            kwargs={"depth": _depth, "alpha": _alpha, "p_last": 0.5},
            paper_no=24,
            paper=PAPER,
            arxiv=ARXIV,
            recipe="pyramidnet_sepdrop",
            paper_accuracy=_acc,
            paper_params=None,
            description=_desc,
            params_counting="weights",
        )
    )
