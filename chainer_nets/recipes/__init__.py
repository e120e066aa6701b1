"""Training recipes as data: one TOML file per paper (or per variant of a paper's recipe).

A recipe file holds the optimizer, learning rate, weight decay, batch size,
training length and learning-rate milestones (in epochs or iterations) or a
linear decay to zero, an optional warm-up, the augmentation, and ``departures``: every place where our
run differs from what the paper did, and why. ``extends = "other"`` inherits
another recipe's fields; its departures are appended to the parent's.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation: pad-and-crop, horizontal flip, normalisation."""

    pad: int = 4
    pad_mode: str = "mean"  # "mean" (zero-pad after normalising), "constant" (black) or "reflect"
    flip: bool = True
    normalize: str = "meanstd"  # per-channel mean and std of the training images


@dataclass(frozen=True)
class Recipe:
    """A paper's CIFAR-10 training recipe."""

    name: str
    paper: str
    optimizer: str  # "momentum_sgd", "nesterov" or "rmsprop"
    lr: float
    weight_decay: float
    batch_size: int
    unit: str  # "epoch" or "iteration": the unit of ``length`` and ``milestones``
    length: int
    milestones: tuple[float, ...]
    gamma: float
    momentum: float = 0.9
    rmsprop_decay: float | None = None  # RMSProp's decay of the mean square (rmsprop only)
    rmsprop_epsilon: float | None = None  # added to the mean square inside the square root
    warmup_lr: float | None = None
    warmup_iterations: int = 0
    decay: str = "step"  # "step" (milestones, gamma) or "linear" (to zero at the end)
    augment: Augment = field(default_factory=Augment)
    departures: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line: optimizer, lr schedule, weight decay, batch and length."""
        if self.optimizer == "rmsprop":
            opt = f"RMSProp decay {self.rmsprop_decay:g} eps {self.rmsprop_epsilon:g}"
        else:
            name = {"momentum_sgd": "SGD", "nesterov": "Nesterov SGD"}[self.optimizer]
            opt = f"{name} {self.momentum:g}"
        steps = ",".join(f"{m:g}" for m in self.milestones)
        unit = "ep" if self.unit == "epoch" else "it"
        decay = "linearly to 0" if self.decay == "linear" else f"x{self.gamma:g}@{steps} {unit}"
        warm = (
            f", warm-up {self.warmup_lr:g} for {self.warmup_iterations} it"
            if self.warmup_lr
            else ""
        )
        return (
            f"{opt}, lr {self.lr:g} {decay}{warm}, "
            f"wd {self.weight_decay:g}, batch {self.batch_size}, {self.length} {unit}"
        )

    def in_iterations(self, iters_per_epoch: float) -> tuple[int, tuple[int, ...]]:
        """Training length and lr milestones, both in iterations."""
        per_unit = iters_per_epoch if self.unit == "epoch" else 1.0
        # an epoch of N images at batch B ends at iteration ceil(k * N / B)
        stop = math.ceil(self.length * per_unit - 1e-9)
        return stop, tuple(int(round(m * per_unit)) for m in self.milestones)


#: The optimizers a recipe may name.
OPTIMIZERS = ("momentum_sgd", "nesterov", "rmsprop")


class UnknownRecipeError(KeyError):
    """Raised for a recipe name without a TOML file."""

    def __str__(self) -> str:
        return str(self.args[0])


def _load_raw(name: str) -> dict:
    path = resources.files(__name__) / f"{name}.toml"
    if not path.is_file():
        raise UnknownRecipeError(f"unknown recipe {name!r}; known: {', '.join(list_recipes())}")
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    base = _load_raw(parent)
    departures = list(base.get("departures", [])) + list(raw.pop("departures", []))
    merged = {**base, **raw}
    merged["augment"] = {**base.get("augment", {}), **raw.get("augment", {})}
    merged["departures"] = departures
    return merged


def get_recipe(name: str) -> Recipe:
    """Load a recipe by name (the TOML file's stem)."""
    raw = _load_raw(name)
    warm = raw.pop("warmup", {})
    if raw.get("decay", "step") not in ("step", "linear"):
        raise ValueError(f"recipe {name!r}: decay must be 'step' or 'linear', got {raw['decay']!r}")
    if raw["optimizer"] not in OPTIMIZERS:
        raise ValueError(
            f"recipe {name!r}: unknown optimizer {raw['optimizer']!r}; known: {', '.join(OPTIMIZERS)}"
        )
    rms = ("rmsprop_decay", "rmsprop_epsilon")
    if (raw["optimizer"] == "rmsprop") != all(k in raw for k in rms) or (
        raw["optimizer"] != "rmsprop" and any(k in raw for k in rms)
    ):
        raise ValueError(
            f"recipe {name!r}: {' and '.join(rms)} are set with optimizer = 'rmsprop' only, and both"
        )
    return Recipe(
        name=name,
        paper=raw["paper"],
        optimizer=raw["optimizer"],
        lr=float(raw["lr"]),
        weight_decay=float(raw["weight_decay"]),
        batch_size=int(raw["batch_size"]),
        unit=raw["unit"],
        length=int(raw["length"]),
        milestones=tuple(raw.get("milestones", ())),
        gamma=float(raw.get("gamma", 0.1)),
        momentum=float(raw.get("momentum", 0.9)),
        rmsprop_decay=float(raw["rmsprop_decay"]) if "rmsprop_decay" in raw else None,
        rmsprop_epsilon=float(raw["rmsprop_epsilon"]) if "rmsprop_epsilon" in raw else None,
        warmup_lr=warm.get("lr"),
        warmup_iterations=int(warm.get("iterations", 0)),
        decay=raw.get("decay", "step"),
        augment=Augment(**raw.get("augment", {})),
        departures=tuple(raw.get("departures", ())),
    )


def list_recipes() -> list[str]:
    """Names of every recipe file."""
    return sorted(
        p.name[: -len(".toml")]
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".toml")
    )
