"""The optimizer a recipe asks for: SGD with (Nesterov) momentum, weight decay on every parameter
except the ones a paper exempts (PReLU's slopes), and a model's own loss when it has one."""

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
    else:
        optimizer = chainer.optimizers.MomentumSGD(lr=base_lr, momentum=recipe.momentum)
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
