"""Model registry: plain names (``resnet110``, ``wrn28_10``) -> factories + paper metadata.

Model modules register their variants with :func:`register`; :func:`get_model`
imports every module under :mod:`chainer_nets.models` the first time it is asked.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

import chainer


@dataclass(frozen=True)
class ModelInfo:
    """One registered model variant and what its paper says about it."""

    name: str
    factory: Callable[..., chainer.Chain]
    paper_no: int  # position in the 2016 list of 24 papers (1..24)
    paper: str  # short title
    arxiv: str  # arXiv id, e.g. "1512.03385"
    recipe: str  # name of the training recipe in chainer_nets/recipes/
    paper_accuracy: float | None  # CIFAR-10 test accuracy (%) the paper reports; None if none
    paper_params: str | None  # parameter count in millions as the paper prints it ("0.27")
    description: str = ""
    kwargs: dict = field(default_factory=dict)
    # How the paper counted: "all" parameters, or conv/linear "weights" only (no BN, no bias).
    params_counting: str = "all"
    # Why our count differs from the paper's stated one, when it does (empty when it matches).
    params_mismatch: str = ""

    @property
    def paper_params_m(self) -> float | None:
        """Paper's parameter count in millions, as a float."""
        return None if self.paper_params is None else float(self.paper_params)

    @property
    def params_decimals(self) -> int:
        """Number of decimals the paper prints its parameter count with."""
        if self.paper_params is None or "." not in self.paper_params:
            return 0
        return len(self.paper_params.split(".")[1])

    def build(self, **overrides) -> chainer.Chain:
        """Instantiate the model (keyword arguments override the registered ones)."""
        return self.factory(**{**self.kwargs, **overrides})


@dataclass(frozen=True)
class Paper:
    """What every registered variant of one paper shares: its number, title, arXiv id, recipe."""

    no: int
    title: str
    arxiv: str
    recipe: str

    def register(
        self,
        name: str,
        factory: Callable[..., chainer.Chain],
        *,
        error: float | None = None,
        **fields,
    ) -> ModelInfo:
        """Register one variant; ``error`` is the paper's CIFAR-10 test error in % (stored as
        ``paper_accuracy = 100 - error``); other ``fields`` are :class:`ModelInfo`'s."""
        if error is not None:
            fields["paper_accuracy"] = round(100 - error, 2)
        fields.setdefault("recipe", self.recipe)
        fields.setdefault("paper_accuracy", None)
        fields.setdefault("paper_params", None)
        info = ModelInfo(
            name=name,
            factory=factory,
            paper_no=self.no,
            paper=self.title,
            arxiv=self.arxiv,
            **fields,
        )
        return register(info)


_REGISTRY: dict[str, ModelInfo] = {}
_loaded = False


def register(info: ModelInfo) -> ModelInfo:
    """Add a model variant to the registry (names must be unique)."""
    if info.name in _REGISTRY:
        raise ValueError(f"model {info.name!r} is registered twice")
    _REGISTRY[info.name] = info
    return info


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    import chainer_nets.models as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{mod.name}")
    _loaded = True


def list_models() -> list[ModelInfo]:
    """All registered models, ordered by paper then name."""
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda i: (i.paper_no, i.name))


class UnknownModelError(KeyError):
    """Raised for a model name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0])


def get_model_info(name: str) -> ModelInfo:
    """Registry entry for ``name``; raises UnknownModelError with close matches."""
    _load_all()
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} `python -m chainer_nets.train --list` shows all."
        )
    return _REGISTRY[name]


def get_model(name: str, **overrides) -> chainer.Chain:
    """Build a registered model by name, e.g. ``get_model('wrn28_10')``."""
    return get_model_info(name).build(**overrides)


def count_params(model: chainer.Link, counting: str = "all") -> int:
    """Number of scalar parameters: ``"all"`` (weights, biases, BN scale and shift; no
    running statistics) or ``"weights"`` (convolution and linear weights only)."""
    if counting == "weights":
        return sum(p.size for name, p in model.namedparams() if name.endswith("/W"))
    if counting != "all":
        raise ValueError(f"counting must be 'all' or 'weights', got {counting!r}")
    return sum(p.size for p in model.params())


def register_once(info: ModelInfo) -> ModelInfo:
    """Register ``info`` unless its name is taken; return the entry registered under that name."""
    _load_all()
    return _REGISTRY.setdefault(info.name, info)
