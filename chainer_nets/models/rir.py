r"""Resnet in Resnet: Generalizing Residual Architectures (Targ, Almeida, Lyman, 2016; arXiv 1603.08029).

The paper's question: an identity shortcut makes it easy to *keep* a feature
but hard to *discard* one, since every block adds to a growing sum. Can a
layer have both a stream that accumulates (residual) and one that can forget
(transient)? Each dual-stream layer ("ResNet Init") holds a residual stream
:math:`\mathbf{r}` and a transient stream :math:`\mathbf{t}` and mixes them
with four convolutions:

.. math::  \mathbf{r}_{l+1} = \sigma\big(\mathrm{BN}(W_{l,r\to r} * \mathbf{r}_l
                                + W_{l,t\to r} * \mathbf{t}_l + s(\mathbf{r}_l))\big),
           \qquad
           \mathbf{t}_{l+1} = \sigma\big(\mathrm{BN}(W_{l,r\to t} * \mathbf{r}_l
                                + W_{l,t\to t} * \mathbf{t}_l)\big),

with :math:`\sigma` = ReLU and :math:`s` the identity shortcut of the residual
stream only. Setting the cross weights to zero gives back a ResNet layer and a
plain CNN layer side by side. An **RiR block** stacks two such layers and
wraps them in an *outer* shortcut on the residual stream,

.. math::  (\mathbf{r}, \mathbf{t}) \mapsto \big(\mathbf{r}'' + s(\mathbf{r}),\ \mathbf{t}''\big),

so that the block is itself a residual block whose residual function is a
small two-stream network: a "ResNet in ResNet".

"18-layer + wide RiR" (paper 94.99% on CIFAR-10): a stem of 3x3 convolutions
(48 filters per stream, 96 in all, Conv-BN-ReLU), eight RiR blocks of two
dual-stream layers (16 layers) with 48+48 channels for blocks 1-2, 96+96 for
blocks 3-5 and 192+192 for blocks 6-8 (96, 192 and 384 filters in all), and a
classifier on the concatenated streams: 1 + 16 + 1 = 18 weighted layers. The
width grows on the first layer of blocks 3 and 6 and the second layer of those
blocks has stride 2 (the layout of the 2016 Chainer implementation, which the
paper's text does not pin down). Where the width or resolution changes,
shortcuts sub-sample and append zero channels (parameter-free "option A").

Parameters: 9,462,048 convolution/linear weights (9.5M, the 2016 table's
figure, which counts weights only); 9,469,930 with biases and BN. We could not
read the paper's own table of parameter counts; a larger figure (about 10.3M) is
sometimes quoted for it, unconfirmed, and this layout does not reach it (see notebook).

Classifier against the 2016 Chainer code (nutszebra/resnet_in_resnet): there the streams end
in a conv1x1-BN-ReLU to the class count *before* global average pooling. We pool first and
apply one linear layer to the concatenated streams, the classifier of the ResNet the paper
generalises (its CIFAR networks end in global average pooling and a fully connected layer),
since the paper's text could not be read here to settle it; the 2016 variant is not followed
because it is a reimplementation's choice with no stated source. The stride placement and
option-A shortcuts do follow the 2016 code (see above).
"""

from __future__ import annotations

import chainer
import chainer.functions as F

from chainer_nets.blocks import ClassifierHead, bn, conv3x3, stage_plan, zero_pad_shortcut
from chainer_nets.registry import Paper

ARXIV = "1603.08029"
PAPER = "Resnet in Resnet (RiR)"


class DualStreamLayer(chainer.Chain):
    r"""One "ResNet Init" layer: equation for :math:`\mathbf{r}_{l+1}` and :math:`\mathbf{t}_{l+1}`.

    :math:`\mathbf{r}' = \mathrm{ReLU}(\mathrm{BN}(W_{rr}*\mathbf{r} + W_{tr}*\mathbf{t} + s(\mathbf{r})))`,
    :math:`\mathbf{t}' = \mathrm{ReLU}(\mathrm{BN}(W_{rt}*\mathbf{r} + W_{tt}*\mathbf{t}))`.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.out_ch, self.stride = out_ch, stride
        with self.init_scope():
            self.w_rr = conv3x3(in_ch, out_ch, stride)  # residual -> residual
            self.w_tr = conv3x3(in_ch, out_ch, stride)  # transient -> residual
            self.w_rt = conv3x3(in_ch, out_ch, stride)  # residual -> transient
            self.w_tt = conv3x3(in_ch, out_ch, stride)  # transient -> transient
            self.bn_r = bn(out_ch)
            self.bn_t = bn(out_ch)

    def forward(
        self, r: chainer.Variable, t: chainer.Variable
    ) -> tuple[chainer.Variable, chainer.Variable]:
        """Both streams read both streams; only the residual stream has a shortcut."""
        shortcut = zero_pad_shortcut(r, self.out_ch, self.stride)
        r_next = F.relu(self.bn_r(self.w_rr(r) + self.w_tr(t) + shortcut))
        t_next = F.relu(self.bn_t(self.w_rt(r) + self.w_tt(t)))
        return r_next, t_next


class RiRBlock(chainer.Chain):
    r"""Two dual-stream layers inside an outer shortcut: :math:`(\mathbf{r}'' + s(\mathbf{r}), \mathbf{t}'')`."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, n_layers: int = 2) -> None:
        super().__init__()
        self.out_ch, self.stride = out_ch, stride
        with self.init_scope():
            self.layers = chainer.ChainList(
                *[
                    # the width changes on the first layer, the resolution on the last
                    DualStreamLayer(
                        in_ch if i == 0 else out_ch, out_ch, stride if i == n_layers - 1 else 1
                    )
                    for i in range(n_layers)
                ]
            )

    def forward(
        self, r: chainer.Variable, t: chainer.Variable
    ) -> tuple[chainer.Variable, chainer.Variable]:
        """The inner layers, then the outer shortcut added to the residual stream."""
        h_r, h_t = r, t
        for layer in self.layers:
            h_r, h_t = layer(h_r, h_t)
        return h_r + zero_pad_shortcut(r, self.out_ch, self.stride), h_t


class Stem(chainer.Chain):
    """One Conv-BN-ReLU per stream reading the image (together: one 3x3 conv with 2c filters)."""

    def __init__(self, out_ch: int) -> None:
        super().__init__()
        with self.init_scope():
            self.conv_r = conv3x3(3, out_ch)
            self.bn_r = bn(out_ch)
            self.conv_t = conv3x3(3, out_ch)
            self.bn_t = bn(out_ch)

    def forward(self, x: chainer.Variable) -> tuple[chainer.Variable, chainer.Variable]:
        """Initial residual and transient streams."""
        return F.relu(self.bn_r(self.conv_r(x))), F.relu(self.bn_t(self.conv_t(x)))


class ResNetInResNet(chainer.Chain):
    """RiR for CIFAR: stem, RiR blocks in three resolutions, classifier on both streams."""

    def __init__(
        self,
        widths: tuple[int, int, int] = (48, 96, 192),
        blocks: tuple[int, int, int] = (2, 3, 3),
        n_classes: int = 10,
    ) -> None:
        super().__init__()
        with self.init_scope():
            self.stem = Stem(widths[0])
            self.blocks = chainer.ChainList()
            for b in stage_plan(widths[0], widths, blocks):
                self.blocks.append(RiRBlock(b.in_ch, b.out_ch, b.stride))
            self.head = ClassifierHead(2 * widths[-1], n_classes)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores (logits) for a batch of 3x32x32 images."""
        r, t = self.stem(x)
        for block in self.blocks:
            r, t = block(r, t)
        return self.head(F.concat((r, t), axis=1))


Paper(12, PAPER, ARXIV, "rir").register(
    "rir_wide18",
    ResNetInResNet,
    # 94.99 (5.01% error): the 2016 Chainer README and a third-party summary of the paper.
    paper_accuracy=94.99,
    # The 2016 table's figure (weights only); the paper's own count could not be checked.
    paper_params="9.5",
    params_counting="weights",
    description="18-layer + wide RiR: 8 RiR blocks of 2 dual-stream layers, 96/192/384 filters",
)
