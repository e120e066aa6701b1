r"""Network In Network (Lin, Chen, Yan, 2013; arXiv 1312.4400).

The paper's question: a convolution filter is a *generalised linear model* of
the patch under it, so it can only separate concepts that are linearly
separable. What if each filter were replaced by a small multilayer perceptron
slid over the image? An **mlpconv** layer computes, at every pixel
:math:`(i, j)`, a conventional convolution followed by :math:`n-1` fully
connected layers that act on the channel vector of that pixel only,

.. math::  f^{1}_{i,j} = \max\big(W_1 * x_{i,j} + b_1, 0\big), \qquad
           f^{n}_{i,j} = \max\big(W_n f^{n-1}_{i,j} + b_n, 0\big),

which is exactly a :math:`k\times k` convolution followed by :math:`1\times 1`
convolutions ("cascaded cross-channel parametric pooling"). The second idea
replaces the fully connected classifier: the last mlpconv layer has one feature
map per class and **global average pooling** turns each map into that class's
score, :math:`s_c = \frac{1}{HW}\sum_{i,j} f^{n}_{c,i,j}`, with no parameters to
overfit.

CIFAR-10 network. The paper's text gives three mlpconv layers, dropout between
them and global average pooling but no widths; the authors' public Caffe
definition (the model zoo's "Network in Network CIFAR10 Model", gist
``mavenlin/e56253735ef32c3c296d``, which the 2016 Chainer code follows layer by
layer) gives them:

=============  ======================================================  ==========
mlpconv 1      conv 5x5 192 (pad 2) -> 1x1 160 -> 1x1 96, ReLU after each  32x32
pool 1         max 3x3 stride 2 (Caffe rounds up), dropout 0.5          16x16
mlpconv 2      conv 5x5 192 (pad 2) -> 1x1 192 -> 1x1 192               16x16
pool 2         average 3x3 stride 2 (rounded up), dropout 0.5           8x8
mlpconv 3      conv 3x3 192 (pad 1) -> 1x1 192 -> 1x1 10                8x8
head           global average pooling -> 10 scores (no fully connected layer)
=============  ======================================================  ==========

A ReLU follows every convolution, the 10-map one included. Counting weights and
biases the network has 966,986 parameters (the paper states none; the 2016
table's "0.1M" is the same network, misprinted). Caffe rounds pooled sizes up:
Chainer's max pooling does too (``cover_all``), its average pooling rounds down,
so :func:`caffe_average_pooling` recomputes Caffe's (the last window is clipped
to the image and averaged over what it covers): 16 -> 8, not 7.

What was checked, against which source:

* the paper, arXiv 1312.4400 (https://arxiv.org/abs/1312.4400), Sections 3-4: mlpconv
  layers of a convolution and 1x1 layers with ReLU, dropout after every mlpconv layer but
  the last, global average pooling instead of fully connected layers, the Table 1 errors.
* the authors' model-zoo definition ``train_val.prototxt`` of gist
  ``mavenlin/e56253735ef32c3c296d`` (https://gist.github.com/mavenlin/e56253735ef32c3c296d;
  read in its copy https://github.com/natanielruiz/net-archive, ``nin-cifar10/``), layer by
  layer: conv1 5x5/192 pad 2, cccp1 160, cccp2 96, pool1 MAX 3/2, dropout 0.5; conv2 5x5/192
  pad 2, cccp3 192, cccp4 192, pool2 AVE 3/2, dropout 0.5; conv3 3x3/192 pad 1, cccp5 192,
  cccp6 10; a ReLU after each of the nine convolutions (cccp6 included); pool3 AVE 8/1 over
  the 8x8 maps, i.e. global average pooling; softmax loss. All of it is the table above. Its
  solver (lr 0.1, momentum 0.9, weight decay 1e-4, lr / 10 at 100k of 120k iterations, batch
  128) is the recipe's; the per-layer learning-rate and decay multipliers are listed there as
  departures.

Paper errors (Table 1): 10.41% with dropout, 8.81% with dropout and data
augmentation (translation and flipping); both are registered (``nin`` and
``nin_aug``), with their recipes. ``nin_bn`` is the 2016 Chainer code's batch-
normalised variant (every convolution pre-activated, BN -> ReLU -> conv, the
last one's output averaged without a ReLU); it is not in the paper.
"""

from __future__ import annotations

import chainer
import chainer.functions as F
import chainer.links as L
import numpy as np
from chainer import initializers

from chainer_nets.registry import Paper

ARXIV = "1312.4400"
PAPER = "Network In Network (NIN)"

#: (kernel size, padding, widths of the conv and its two 1x1 layers) of the three mlpconv layers.
CIFAR10_MLPCONV = ((5, 2, (192, 160, 96)), (5, 2, (192, 192, 192)), (3, 1, (192, 192, None)))
#: Dropout ratio after the first two mlpconv layers (after their pooling).
DROPOUT = 0.5


def _conv(in_ch: int, out_ch: int, ksize: int, pad: int) -> L.Convolution2D:
    """Convolution with bias, He-normal weights over the input fan, zero bias."""
    return L.Convolution2D(in_ch, out_ch, ksize, 1, pad, initialW=initializers.HeNormal())


class MLPConv(chainer.Chain):
    r"""An mlpconv layer: a :math:`k\times k` convolution then 1x1 convolutions, each with ReLU.

    The 1x1 convolutions are a fully connected network applied to every pixel's channel vector.
    """

    def __init__(self, in_ch: int, widths: tuple[int, ...], ksize: int, pad: int) -> None:
        super().__init__()
        chans = (in_ch, *widths)
        with self.init_scope():
            self.layers = chainer.ChainList(
                *[
                    _conv(chans[i], chans[i + 1], ksize if i == 0 else 1, pad if i == 0 else 0)
                    for i in range(len(widths))
                ]
            )

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """:math:`f^{l} = \\max(W_l f^{l-1} + b_l, 0)` for the conv and each 1x1 layer."""
        h = x
        for conv in self.layers:
            h = F.relu(conv(h))
        return h


class PreActMLPConv(chainer.Chain):
    """The 2016 code's batch-normalised mlpconv: BN -> ReLU -> conv for every convolution."""

    def __init__(self, in_ch: int, widths: tuple[int, ...], ksize: int, pad: int) -> None:
        super().__init__()
        chans = (in_ch, *widths)
        with self.init_scope():
            self.bns = chainer.ChainList(*[L.BatchNormalization(c) for c in chans[:-1]])
            self.convs = chainer.ChainList(
                *[
                    _conv(chans[i], chans[i + 1], ksize if i == 0 else 1, pad if i == 0 else 0)
                    for i in range(len(widths))
                ]
            )

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """BN, ReLU, conv, for each layer (no activation after the last conv)."""
        h = x
        for bn, conv in zip(self.bns, self.convs, strict=True):
            h = conv(F.relu(bn(h)))
        return h


def caffe_average_pooling(x: chainer.Variable, ksize: int, stride: int) -> chainer.Variable:
    """Average pooling with Caffe's rounded-up output size: ``ceil((n - k) / s) + 1``.

    Windows that run past the edge are clipped and averaged over the pixels they cover.
    """
    n = x.shape[2]
    out = -(-(n - ksize) // stride) + 1
    extra = (out - 1) * stride + ksize - n  # rows and columns past the edge
    if extra <= 0:
        return F.average_pooling_2d(x, ksize, stride)
    padded = F.pad(x, ((0, 0), (0, 0), (0, extra), (0, extra)), "constant")
    summed = F.average_pooling_2d(padded, ksize, stride) * (ksize * ksize)
    starts = np.arange(out) * stride
    cover = np.minimum(starts + ksize, n) - starts  # pixels each window covers per axis
    count = (cover[:, None] * cover[None, :]).astype(x.dtype)
    xp = chainer.backend.get_array_module(x)
    return summed / xp.asarray(count)[None, None]


def global_average_pooling(h: chainer.Variable) -> chainer.Variable:
    r"""One score per map: :math:`s_c = \frac{1}{HW}\sum_{i,j} h_{c,i,j}`."""
    return F.mean(h, axis=(2, 3))


class NIN(chainer.Chain):
    """The authors' CIFAR-10 Network In Network: three mlpconv layers and global average pooling.

    ``batch_norm=True`` gives the 2016 code's variant (pre-activated BN mlpconv layers).
    """

    def __init__(
        self, n_classes: int = 10, dropout: float = DROPOUT, batch_norm: bool = False
    ) -> None:
        super().__init__()
        self.dropout = dropout
        self.batch_norm = batch_norm
        block = PreActMLPConv if batch_norm else MLPConv
        in_ch, blocks = 3, []
        for ksize, pad, widths in CIFAR10_MLPCONV:
            widths = tuple(n_classes if w is None else w for w in widths)
            blocks.append(block(in_ch, widths, ksize, pad))
            in_ch = widths[-1]
        with self.init_scope():
            self.mlpconv1, self.mlpconv2, self.mlpconv3 = blocks

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """mlpconv, max pool, dropout, mlpconv, average pool, dropout, mlpconv, GAP."""
        h = self.mlpconv1(x)
        h = F.dropout(F.max_pooling_2d(h, 3, 2), self.dropout)  # Caffe ceil mode = cover_all
        h = self.mlpconv2(h)
        h = F.dropout(caffe_average_pooling(h, 3, 2), self.dropout)
        h = self.mlpconv3(h)
        return global_average_pooling(h)


_paper = Paper(1, PAPER, ARXIV, "nin")
_paper.register(
    "nin",
    NIN,
    error=10.41,  # Table 1: NIN + dropout, no augmentation
    description="authors' CIFAR-10 NIN (3 mlpconv 192-160-96/192-192-192/192-192-10, GAP), "
    "no augmentation; the paper states no parameter count",
)
_paper.register(
    "nin_aug",
    NIN,
    recipe="nin_aug",
    error=8.81,  # Table 1: NIN + dropout + data augmentation
    description="the same network trained with translation and flipping augmentation",
)
_paper.register(
    "nin_bn",
    NIN,
    recipe="nin_aug",
    kwargs={"batch_norm": True},
    description="the 2016 Chainer code's variant, not the paper's: BN-ReLU-conv in every "
    "mlpconv layer; its only figure is the 2016 table's accuracy",
)
