r"""The learning-rate schedule of a recipe, in iterations, as one object.

A recipe gives a training length and milestones (in epochs or iterations), a
decay factor :math:`\gamma` and an optional warm-up. For update number
:math:`t` (0-based):

.. math::  \eta(t) = \begin{cases} \eta_{\text{warm}} & t < T_{\text{warm}} \\
           \eta_0\,\gamma^{\,|\{m \in M : t \ge m\}|} & \text{otherwise} \end{cases}

or, for a recipe with ``decay = "linear"`` (Caffe's "poly" policy with power 1), the
rate falls linearly to zero over the :math:`T` updates of the run,
:math:`\eta(t) = \eta_0\,(1 - t/T)`.

``--epochs`` compresses or stretches the whole schedule (warm-up and milestones
scale with the length). The rate is a function of the iteration alone, so a
resumed run sets it from the restored iteration and continues exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import chainer

from chainer_nets.recipes import Recipe


@dataclass(frozen=True)
class Schedule:
    """Training length, milestones and warm-up in iterations, and the rate they give."""

    stop: int
    milestones: tuple[int, ...]
    base_lr: float
    gamma: float
    warmup_iterations: int = 0
    warmup_lr: float | None = None
    decay: str = "step"  # or "linear": eta_0 * (1 - t / stop)

    @classmethod
    def from_recipe(
        cls,
        recipe: Recipe,
        iters_per_epoch: float,
        epochs: float | None = None,
        lr: float | None = None,
    ) -> Schedule:
        """The recipe's schedule; ``epochs`` rescales all of it, ``lr`` replaces the base rate."""
        stop, milestones = recipe.in_iterations(iters_per_epoch)
        warmup = recipe.warmup_iterations
        if epochs is not None:
            new_stop = max(1, math.ceil(epochs * iters_per_epoch - 1e-9))  # ends on the epoch
            milestones = tuple(int(round(m * new_stop / stop)) for m in milestones)
            warmup = int(round(warmup * new_stop / stop))
            stop = new_stop
        return cls(
            stop=stop,
            milestones=milestones,
            base_lr=recipe.lr if lr is None else lr,
            gamma=recipe.gamma,
            warmup_iterations=warmup,
            warmup_lr=recipe.warmup_lr,
            decay=recipe.decay,
        )

    def lr(self, iteration: int) -> float:
        """Learning rate of update number ``iteration`` (0-based): warm-up, then step decay."""
        if self.warmup_lr is not None and iteration < self.warmup_iterations:
            return self.warmup_lr
        if self.decay == "linear":
            return self.base_lr * max(0.0, 1.0 - iteration / self.stop)
        return self.base_lr * self.gamma ** sum(iteration >= m for m in self.milestones)

    def hyperparams(self, iteration: int) -> dict[str, float]:
        """Every optimizer hyper-parameter the schedule drives, for update ``iteration``."""
        return {"lr": self.lr(iteration)}

    def apply(self, optimizer: chainer.Optimizer, iteration: int) -> None:
        """Set the optimizer's scheduled hyper-parameters for update ``iteration``."""
        for name, value in self.hyperparams(iteration).items():
            setattr(optimizer, name, value)


def lr_at(
    recipe: Recipe,
    iteration: int,
    milestones: tuple[int, ...],
    base_lr: float,
    warmup_iterations: int | None = None,
) -> float:
    """Learning rate of update ``iteration`` for given milestones (``warmup_iterations``
    overrides the recipe's); a shortcut to :meth:`Schedule.lr`."""
    warmup = recipe.warmup_iterations if warmup_iterations is None else warmup_iterations
    schedule = Schedule(
        stop=max(milestones, default=0),
        milestones=tuple(milestones),
        base_lr=base_lr,
        gamma=recipe.gamma,
        warmup_iterations=warmup,
        warmup_lr=recipe.warmup_lr,
    )
    return schedule.lr(iteration)
