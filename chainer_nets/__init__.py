"""chainer_nets: faithful Chainer reimplementations of the CIFAR-10 papers of 2013-2016.

Importing the package first makes Chainer 7.8.1 work on the current stack
(:mod:`chainer_nets.compat`), then exposes the model registry.
"""

from chainer_nets import compat as _compat

_compat.install()

from chainer_nets.registry import ModelInfo, get_model, get_model_info, list_models  # noqa: E402

__all__ = ["ModelInfo", "get_model", "get_model_info", "list_models"]
__version__ = "0.1.0"
from chainer_nets import cpu_fast as _cpu_fast  # noqa: E402, I001

_cpu_fast.install()
