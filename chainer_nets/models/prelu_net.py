r"""Delving Deep into Rectifiers (He, Zhang, Ren, Sun, 2015; arXiv 1502.01852).

Two contributions. **PReLU**, a rectifier whose negative slope is learned, one
per channel:

.. math::  f(y_i) = \max(0, y_i) + a_i \min(0, y_i), \qquad a_i \leftarrow 0.25 \text{ at start},

trained by back-propagation with momentum but *without weight decay* on
:math:`a_i` (decay would push every slope to 0, i.e. back to ReLU). And an
**initialisation** for rectifier networks: for a layer with
:math:`n_l = k^2 c` inputs per output (kernel :math:`k`, :math:`c` input
channels), keeping the variance of the responses constant through depth
requires :math:`\tfrac12 n_l \mathrm{Var}[w_l] = 1`, i.e.

.. math::  w_l \sim \mathcal{N}\big(0, \sqrt{2 / n_l}\,^2\big), \qquad b_l = 0,

where Xavier's :math:`\mathrm{Var}[w_l] = 1/n_l` halves the variance at every
ReLU layer. Chainer's ``HeNormal`` (fan in) is exactly this distribution;
:func:`he_normal` draws it in float32.

ImageNet models (Table 3), no batch normalization:

=======  ==========================================================================
A (19)   conv 7x7/2 96; pool 2x2/2; 5 x conv3x3 256; pool 2x2/2; 5 x conv3x3 512;
         pool 2x2/2; 5 x conv3x3 512; SPP {7x7, 3x3, 2x2, 1x1}; FC 4096, 4096, 1000
B (22)   A with 6 convolutions per stage
C (22)   B with widths 384 / 768 / 896
=======  ==========================================================================

Every layer, the fully connected ones included, is followed by a PReLU; dropout
0.5 after each FC-4096. The spatial pyramid pool divides the last map into 7x7,
3x3, 2x2 and 1x1 bins and max-pools each (63 bins), so the first FC layer has
:math:`(49 + 9 + 4 + 1) \cdot C` inputs whatever the image size. The maps are
224 -> 112 (the 7x7/2 convolution, padded by 3) -> 56, 28, 14 (the three
stages, each after a 2x2/2 max pool): model A is VGG-19 with its four
convolutions at 224 and 112 replaced by one 7x7/2 layer and three more 3x3
layers at 56, 28 and 14. The paper prints no parameter count, so none is pinned
against it; the tests pin our counts.

What was checked, against which source:

* the paper, arXiv 1502.01852 (https://arxiv.org/abs/1502.01852), Table 3 and
  Section 3.3. The layout is confirmed by the table's last row: its
  complexity, 1.90 / 2.32 / 5.30 x 10^10 multiply-adds for A / B / C at
  224x224, is what this layout computes (1.906 / 2.322 / 5.346; the tests
  recompute it from a forward pass). A 3x3/3 pool after the first
  convolution, which an earlier version of this module had, gives 0.83 / 1.00
  / 2.29 and cannot be the table's. The widths (96; 256/512/512 for A and B,
  384/768/896 for C), the 5 or 6 convolutions per stage, the SPP levels
  {7, 3, 2, 1}, the FC sizes 4096, 4096, 1000 and the depths 19 / 22 / 22 are
  Table 3's.
* the 2016 Chainer implementation (https://github.com/nutszebra/prelu_net,
  ``prelu.py``): the same stem (7x7/2, padding 3) and a 2x2/2 max pool before
  each of the three stages, global average pooling where the paper has SPP.

CIFAR-10 adaptation, in one place (``cifar=True`` in :class:`PReLUNet`): global
average pooling replaces SPP, as the 2016 Chainer code did (it had up-sampled
CIFAR-10 to 224x224 and kept the paper's pools). At 32x32 we keep the 7x7/2
stem (32 -> 16) and drop the pool after it, which would leave the last stage
only 2x2 pixels; the stages run at 16, 8 and 4 pixels. The FC head (4096, 4096,
10, PReLU and dropout) stays.
"""

from __future__ import annotations

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np

from chainer_nets.models.vgg import FastInit
from chainer_nets.registry import Paper

ARXIV = "1502.01852"
PAPER = "Delving Deep into Rectifiers (PReLU-net)"

#: The initial value of every PReLU slope.
SLOPE_INIT = 0.25
#: Table 3: (convolutions per stage, widths of the three stages).
MODELS = {"A": (5, (256, 512, 512)), "B": (6, (256, 512, 512)), "C": (6, (384, 768, 896))}
#: Bins per side of the spatial pyramid pool.
PYRAMID = (7, 3, 2, 1)
STEM_WIDTH, FC_WIDTH, DROPOUT = 96, 4096, 0.5


def he_normal() -> FastInit:
    r"""The paper's initialisation: :math:`\mathcal{N}(0, 2/n_l)`, :math:`n_l = k^2 c` (fan in)."""
    return FastInit("he")


def prelu(channels: int) -> L.PReLU:
    """Channel-wise PReLU, every slope starting at 0.25 (the slopes are exempt from weight decay)."""
    return L.PReLU(shape=(channels,), init=SLOPE_INIT)


def spatial_pyramid_pooling(
    h: chainer.Variable, pyramid: tuple[int, ...] = PYRAMID
) -> chainer.Variable:
    """Max over an n x n grid of bins for each n in ``pyramid``, flattened and concatenated.

    Bin i of n covers rows ``floor(i*H/n)`` to ``ceil((i+1)*H/n)`` (so every bin is non-empty).
    """
    n_batch, _, height, width = h.shape
    levels = []
    for n in pyramid:
        ys = [(int(np.floor(i * height / n)), int(np.ceil((i + 1) * height / n))) for i in range(n)]
        xs = [(int(np.floor(j * width / n)), int(np.ceil((j + 1) * width / n))) for j in range(n)]
        bins = [F.max(h[:, :, y0:y1, x0:x1], axis=(2, 3)) for y0, y1 in ys for x0, x1 in xs]
        levels.append(F.reshape(F.stack(bins, axis=2), (n_batch, -1)))
    return F.concat(levels, axis=1)


class ConvPReLU(chainer.Chain):
    """Convolution (He-initialised, zero bias) followed by a channel-wise PReLU."""

    def __init__(self, in_ch: int, out_ch: int, ksize: int, stride: int = 1, pad: int = 0) -> None:
        super().__init__()
        with self.init_scope():
            self.conv = L.Convolution2D(in_ch, out_ch, ksize, stride, pad, initialW=he_normal())
            self.act = prelu(out_ch)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """:math:`f(W * x + b)` with the learned-slope rectifier :math:`f`."""
        return self.act(self.conv(x))


class PReLUNet(chainer.Chain):
    """Model A, B or C of Table 3; ``cifar=True`` is the 32x32 adaptation (GAP instead of SPP)."""

    def __init__(self, model: str = "A", cifar: bool = True, n_classes: int | None = None) -> None:
        super().__init__()
        if n_classes is None:
            n_classes = 10 if cifar else 1000
        self.cifar = cifar
        depth, widths = MODELS[model]
        # The 32x32 adaptation: no pool after the stem, GAP instead of SPP (see module).
        stem = ConvPReLU(3, STEM_WIDTH, 7, 2, 3)
        stages, in_ch = [], STEM_WIDTH
        for width in widths:
            layers = [ConvPReLU(in_ch if i == 0 else width, width, 3, 1, 1) for i in range(depth)]
            stages.append(chainer.Sequential(*layers))
            in_ch = width
        fc_in = in_ch if cifar else in_ch * sum(n * n for n in PYRAMID)
        with self.init_scope():
            self.stem = stem
            self.stages = chainer.ChainList(*stages)
            self.fc1 = L.Linear(fc_in, FC_WIDTH, initialW=he_normal())
            self.act1 = prelu(FC_WIDTH)
            self.fc2 = L.Linear(FC_WIDTH, FC_WIDTH, initialW=he_normal())
            self.act2 = prelu(FC_WIDTH)
            self.fc3 = L.Linear(FC_WIDTH, n_classes, initialW=he_normal())

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Stem, three stages each after a 2x2/2 max pool (not the first at 32x32), SPP/GAP, FC."""
        h = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i > 0 or not self.cifar:
                h = F.max_pooling_2d(h, 2, 2)
            h = stage(h)
        h = F.mean(h, axis=(2, 3)) if self.cifar else spatial_pyramid_pooling(h)
        h = F.dropout(self.act1(self.fc1(h)), DROPOUT)
        h = F.dropout(self.act2(self.fc2(h)), DROPOUT)
        return self.fc3(h)


_paper = Paper(6, PAPER, ARXIV, "prelu")
for _model, _layers in (("A", 19), ("B", 22), ("C", 22)):
    _paper.register(
        f"prelu_net_{_model.lower()}_imagenet",
        PReLUNet,
        kwargs={"model": _model, "cifar": False},
        dataset="imagenet",
        description=f"model {_model} of Table 3 ({_layers} layers) with SPP {{7,3,2,1}}, "
        "FC 4096-4096-1000; the paper prints no parameter count",
    )
_paper.register(
    "prelu_net_a",
    PReLUNet,
    kwargs={"model": "A", "cifar": True},
    # The 2016 table's figure (weights only; its network had the same layers), not the paper's.
    paper_params="43.9",
    params_counting="weights",
    description="model A's layers at 32x32: 7x7/2 stem without the 2x2/2 pool after it, "
    "global average pooling instead of SPP, FC 4096-4096-10 (no CIFAR-10 result in the paper); "
    "its parameter figure is the 2016 table's",
)
