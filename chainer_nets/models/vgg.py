r"""Very Deep Convolutional Networks for Large-Scale Image Recognition (Simonyan, Zisserman, 2014; arXiv 1409.1556).

The paper's question: how does accuracy change with depth if everything else is
held fixed? Every convolution is :math:`3\times 3` (stride 1, padding 1), so a
stack of :math:`n` of them sees a :math:`(2n+1)\times(2n+1)` window with
:math:`n` non-linearities instead of one, and with :math:`C` channels in and out
costs :math:`n\cdot 9C^2` weights instead of :math:`(2n+1)^2 C^2`:

.. math::  \text{receptive field}(n) = 2n + 1, \qquad
           \frac{3\cdot 9C^2}{49C^2} = 0.55 \quad(\text{three } 3\times3 \text{ vs one } 7\times7).

Configurations (Table 1). Five stages separated by 2x2/2 max pooling; every
convolution is followed by a ReLU; "conv1" in C is a 1x1 convolution:

=====  =======  ==========================================================
A      11       64 | 128 | 256 256 | 512 512 | 512 512
A-LRN  11       A with local response normalisation after the first layer
B      13       64 64 | 128 128 | 256 256 | 512 512 | 512 512
C      16       B with a 1x1 conv appended to stages 3, 4 and 5
D      16       64 64 | 128 128 | 256 x3 | 512 x3 | 512 x3
E      19       64 64 | 128 128 | 256 x4 | 512 x4 | 512 x4
=====  =======  ==========================================================

ImageNet head: FC-4096, FC-4096, FC-1000 on the 7x7x512 map of a 224x224 image,
dropout 0.5 after each FC-4096. Counting weights and biases this gives the
paper's Table 2 (133, 133, 134, 138, 144 million parameters); the ``*_imagenet``
models are those networks, registered to pin the counts and never trained here.
Initialisation: the paper trained A from N(0, 0.01) and started the deeper ones
from A's layers, then notes that Glorot & Bengio's initialisation works without
pre-training; we use Glorot (uniform) for every configuration.

CIFAR-10 adaptation, in one place (:func:`cifar_head`): the convolution stacks
and pools are the paper's; after five 2x2 poolings a 32x32 image is a 1x1x512
map, so the first FC layer takes 512 inputs instead of 7x7x512 = 25,088, and the
last has 10 outputs. The two FC-4096 layers and their dropout stay. The 2016
Chainer code instead up-sampled CIFAR-10 to 224x224 (test at 384) and kept the
ImageNet head as a 7x7 convolution + 1x1 convolutions + global average pooling
(128.8M weights): 49 times the pixels per image and about 4.6x our parameters.
"""

from __future__ import annotations

import math

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

from chainer_nets.registry import Paper

ARXIV = "1409.1556"
PAPER = "Very Deep Convolutional Networks (VGG)"

#: Table 1: per stage, the (kernel size, width) of each convolution.
CONFIGS: dict[str, tuple[tuple[tuple[int, int], ...], ...]] = {
    "A": (((3, 64),), ((3, 128),), ((3, 256),) * 2, ((3, 512),) * 2, ((3, 512),) * 2),
    "B": (((3, 64),) * 2, ((3, 128),) * 2, ((3, 256),) * 2, ((3, 512),) * 2, ((3, 512),) * 2),
    "C": (
        ((3, 64),) * 2,
        ((3, 128),) * 2,
        ((3, 256), (3, 256), (1, 256)),
        ((3, 512), (3, 512), (1, 512)),
        ((3, 512), (3, 512), (1, 512)),
    ),
    "D": (((3, 64),) * 2, ((3, 128),) * 2, ((3, 256),) * 3, ((3, 512),) * 3, ((3, 512),) * 3),
    "E": (((3, 64),) * 2, ((3, 128),) * 2, ((3, 256),) * 4, ((3, 512),) * 4, ((3, 512),) * 4),
}
CONFIGS["A-LRN"] = CONFIGS["A"]
#: Width of the two hidden fully connected layers, and their dropout ratio.
FC_WIDTH, DROPOUT = 4096, 0.5


class FastInit(chainer.initializer.Initializer):
    r"""Glorot-uniform (``"glorot"``) or He-normal fan-in (``"he"``) weights, drawn in float32.

    Glorot: :math:`U(-s, s)`, :math:`s = \sqrt{6 / (n_{in} + n_{out})}`; He: :math:`\mathcal{N}(0, 2 / n_{in})`.
    The same distributions as Chainer's ``GlorotUniform`` and ``HeNormal``, drawn by NumPy's
    float32 generator (seeded from the global random state), so that the 100M-weight fully
    connected layers of the ImageNet networks take a fraction of a second to build.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in ("glorot", "he"):
            raise ValueError(f"kind must be 'glorot' or 'he', got {kind!r}")
        self.kind = kind

    def __call__(self, array: chainer.types.NdArray) -> None:
        """Fill ``array`` (out, in, ...) in place."""
        receptive = int(np.prod(array.shape[2:], dtype=np.int64))
        fan_in, fan_out = array.shape[1] * receptive, array.shape[0] * receptive
        rng = np.random.default_rng(np.random.randint(2**31))
        if self.kind == "he":
            values = rng.standard_normal(array.shape, dtype=np.float32)
            values *= np.float32(math.sqrt(2.0 / fan_in))
        else:
            s = math.sqrt(6.0 / (fan_in + fan_out))
            values = rng.random(array.shape, dtype=np.float32)
            values *= np.float32(2 * s)
            values -= np.float32(s)
        array[...] = chainer.backend.get_array_module(array).asarray(values, dtype=array.dtype)


def receptive_field(n_layers: int, ksize: int = 3) -> int:
    """Side of the window seen by ``n_layers`` stacked stride-1 convolutions of ``ksize``."""
    return n_layers * (ksize - 1) + 1


class VGGFeatures(chainer.Chain):
    """The convolution stacks of one configuration, max pooling 2x2/2 after each stage."""

    def __init__(self, config: str, lrn: bool = False) -> None:
        super().__init__()
        self.lrn = lrn
        self.stages_plan = CONFIGS[config]
        convs, in_ch = [], 3
        for stage in self.stages_plan:
            for ksize, width in stage:
                convs.append(
                    L.Convolution2D(in_ch, width, ksize, 1, ksize // 2, initialW=FastInit("glorot"))
                )
                in_ch = width
        self.out_channels = in_ch
        with self.init_scope():
            self.convs = chainer.ChainList(*convs)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """conv + ReLU for every layer, LRN after the first in A-LRN, pool after each stage."""
        h, i = x, 0
        for stage in self.stages_plan:
            for _ in stage:
                h = F.relu(self.convs[i](h))
                if self.lrn and i == 0:  # Krizhevsky's LRN: n=5, k=2, alpha=1e-4, beta=0.75
                    h = F.local_response_normalization(h, n=5, k=2, alpha=1e-4, beta=0.75)
                i += 1
            h = F.max_pooling_2d(h, 2, 2)
        return h


class VGGHead(chainer.Chain):
    """FC-``hidden`` -> FC-``hidden`` -> FC-``n_classes``, ReLU and dropout after the hidden ones."""

    def __init__(self, in_features: int, hidden: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout
        init = FastInit("glorot")
        with self.init_scope():
            self.fc1 = L.Linear(in_features, hidden, initialW=init)
            self.fc2 = L.Linear(hidden, hidden, initialW=init)
            self.fc3 = L.Linear(hidden, n_classes, initialW=init)

    def forward(self, h: chainer.Variable) -> chainer.Variable:
        """Flatten the map, then the three FC layers."""
        h = F.dropout(F.relu(self.fc1(h)), self.dropout)
        h = F.dropout(F.relu(self.fc2(h)), self.dropout)
        return self.fc3(h)


def imagenet_head(channels: int = 512) -> VGGHead:
    """The paper's head on the 7x7 map of a 224x224 image: FC-4096, FC-4096, FC-1000."""
    return VGGHead(7 * 7 * channels, FC_WIDTH, 1000, DROPOUT)


def cifar_head(channels: int = 512, n_classes: int = 10) -> VGGHead:
    """The only change 32x32 inputs force: a 1x1 map, so FC-4096 takes ``channels`` inputs."""
    return VGGHead(channels, FC_WIDTH, n_classes, DROPOUT)


class VGG(chainer.Chain):
    """A VGG configuration: the paper's convolution stacks, then ``head`` ("imagenet" or "cifar")."""

    def __init__(self, config: str = "A", head: str = "cifar", n_classes: int = 10) -> None:
        super().__init__()
        if head not in ("imagenet", "cifar"):
            raise ValueError(f"head must be 'imagenet' or 'cifar', got {head!r}")
        self.config = config
        with self.init_scope():
            self.features = VGGFeatures(config, lrn=config == "A-LRN")
            c = self.features.out_channels
            self.head = imagenet_head(c) if head == "imagenet" else cifar_head(c, n_classes)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Convolution stacks, then the classifier head."""
        return self.head(self.features(x))


_paper = Paper(2, PAPER, ARXIV, "vgg")
#: name, configuration, Table 2's parameter count (millions) of the ImageNet network.
_TABLE2 = (
    ("vgg11", "A", "133"),
    ("vgg11_lrn", "A-LRN", "133"),
    ("vgg13", "B", "133"),
    ("vgg16c", "C", "134"),
    ("vgg16", "D", "138"),
    ("vgg19", "E", "144"),
)
for _name, _config, _params in _TABLE2:
    _paper.register(
        f"{_name}_imagenet",
        VGG,
        kwargs={"config": _config, "head": "imagenet"},
        paper_params=_params,
        dataset="imagenet",
        description=f"configuration {_config} of Table 1 at 224x224, FC 4096-4096-1000",
    )
for _name, _config in (("vgg11", "A"), ("vgg16", "D")):
    _paper.register(
        _name,
        VGG,
        kwargs={"config": _config, "head": "cifar"},
        description=f"configuration {_config}'s convolution stacks, FC 512->4096->4096->10 "
        "(the paper has no CIFAR-10 result)",
    )
