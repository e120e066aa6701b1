r"""The optimizer a recipe asks for: SGD with (Nesterov) momentum or RMSProp, weight decay on every
parameter except the ones a paper exempts (PReLU's slopes), and a model's own loss when it has one.

RMSProp (Inception-v3's "decay 0.9, :math:`\epsilon = 1.0`") divides each gradient by a running
root mean square,

.. math::  m \leftarrow \rho\, m + (1 - \rho)\, g^2, \qquad
           \theta \leftarrow \theta - \eta\, g / \sqrt{m + \epsilon},

with :math:`\epsilon` *inside* the square root, as TensorFlow's ``RMSPropOptimizer`` has it
(https://github.com/tensorflow/tensorflow, ``tensorflow/python/training/rmsprop.py``), the
optimizer of the public Inception training script (https://github.com/tensorflow/models,
``research/inception/inception/inception_train.py``: decay 0.9, momentum 0.9, epsilon 1.0).
Chainer's ``RMSprop`` adds :math:`\epsilon` outside, :math:`g / (\sqrt m + \epsilon)`, unless ``eps_inside_sqrt=True``,
which is what is used here. With :math:`\epsilon = 1` the choice matters: for a mean square
:math:`m = 1` a step is :math:`0.71\,\eta g` inside and :math:`0.5\,\eta g` outside. Two
differences from TensorFlow remain and are listed in the recipe: Chainer's rule has no momentum
term (TensorFlow's reference training script adds momentum 0.9 on top) and starts :math:`m` at
0 (TensorFlow at 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import chainer
import chainer.functions as F
import chainer.links as L

from chainer_nets.recipes import Recipe

if TYPE_CHECKING:
    from chainer_nets.train import TrainConfig


class WeightDecayExceptSlopes(chainer.optimizer_hooks.WeightDecay):
    """Chainer's WeightDecay, skipping parameters whose update rule says ``no_weight_decay``."""

    def __call__(self, rule: chainer.UpdateRule, param: chainer.Parameter) -> None:
        """Add ``rate * param`` to the gradient unless the parameter is exempt."""
        if getattr(rule, "no_weight_decay", False):
            return
        super().__call__(rule, param)


def build_optimizer(
    net: chainer.Chain, recipe: Recipe, cfg: TrainConfig, device, base_lr: float
) -> chainer.Optimizer:
    """The recipe's optimizer on ``net`` (wrapped in a Classifier on ``device``); a net with
    a ``loss(y, t)`` method (auxiliary heads, label smoothing) trains on that loss."""
    model = L.Classifier(net, lossfun=getattr(net, "loss", F.softmax_cross_entropy))
    model.to_device(device)
    if recipe.optimizer == "nesterov":
        optimizer = chainer.optimizers.NesterovAG(lr=base_lr, momentum=recipe.momentum)
    elif recipe.optimizer == "rmsprop":
        optimizer = chainer.optimizers.RMSprop(
            lr=base_lr,
            alpha=recipe.rmsprop_decay,
            eps=recipe.rmsprop_epsilon,
            eps_inside_sqrt=True,  # TensorFlow's sqrt(m + eps), see the module docstring
        )
    elif recipe.optimizer == "momentum_sgd":
        optimizer = chainer.optimizers.MomentumSGD(lr=base_lr, momentum=recipe.momentum)
    else:
        raise ValueError(f"unknown optimizer {recipe.optimizer!r} in recipe {recipe.name!r}")
    optimizer.setup(model)
    optimizer.add_hook(WeightDecayExceptSlopes(recipe.weight_decay))
    for link in net.links():
        if isinstance(link, L.PReLU):  # the PReLU paper decays no slope
            link.W.update_rule.no_weight_decay = True
    if cfg.dtype == "mixed16":
        optimizer.use_fp32_update()
    if hasattr(net, "configure_optimizer"):
        net.configure_optimizer(optimizer, recipe)
    return optimizer
