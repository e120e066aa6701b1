r"""Aggregated Residual Transformations for Deep Neural Networks, ResNeXt (Xie, Girshick,
Dollár, Tu, He, 2016; arXiv 1611.05431).

A ResNeXt block replaces the single bottleneck transformation of a residual block by a
sum of :math:`C` transformations of the same shape (the cardinality):

.. math::  \mathbf{y} = \mathrm{ReLU}\Big(s(\mathbf{x}) + \mathrm{BN}\Big(\sum_{i=1}^{C}
           \mathcal{T}_i(\mathbf{x})\Big)\Big),\qquad
           \mathcal{T}_i(\mathbf{x}) = W^{c}_i\,\mathrm{ReLU}\big(\mathrm{BN}(W^{b}_i *
           \mathrm{ReLU}(\mathrm{BN}(W^{a}_i\,\mathbf{x})))\big),

where path :math:`i` reduces the input to :math:`d` channels with a 1x1 convolution
:math:`W^a_i`, applies a 3x3 convolution :math:`W^b_i` on those :math:`d` channels, and
maps back with a 1x1 convolution :math:`W^c_i`. Stacking the :math:`W^a_i` gives one 1x1
convolution to :math:`Cd` channels, the :math:`W^b_i` together are one 3x3 convolution
with :math:`C` groups, and summing the :math:`W^c_i` outputs is one 1x1 convolution of the
concatenated :math:`Cd` channels: the whole block is a bottleneck block whose middle
convolution is grouped. The CIFAR networks (ResNeXt-29, :math:`C\times d`) have a 3x3 stem
with 64 maps, three stages of three blocks with outputs of 256, 512 and 1024 maps
(bottleneck widths :math:`Cd`, :math:`2Cd`, :math:`4Cd`), global average pooling and a
linear layer; a 1x1 projection with BN is the shortcut where the width changes.
"""

from __future__ import annotations

import chainer
import chainer.functions as F
import chainer.links as L

from chainer_nets.blocks import ClassifierHead, bn, conv1x1, conv3x3, conv_init
from chainer_nets.registry import ModelInfo, register

ARXIV = "1611.05431"
PAPER = "Aggregated Residual Transformations (ResNeXt)"


class ResNeXtBlock(chainer.Chain):
    """Post-activation bottleneck block whose 3x3 convolution has ``cardinality`` groups."""

    def __init__(
        self, in_ch: int, width: int, out_ch: int, cardinality: int, stride: int = 1
    ) -> None:
        super().__init__()
        if width % cardinality:
            raise ValueError(f"width {width} is not a multiple of cardinality {cardinality}")
        self.cardinality = cardinality
        self.stride = stride
        self.project = in_ch != out_ch  # shortcut "B": projection only where the width changes
        with self.init_scope():
            self.conv1 = conv1x1(in_ch, width)
            self.bn1 = bn(width)
            self.conv2 = L.Convolution2D(
                width,
                width,
                3,
                stride,
                1,
                nobias=True,
                initialW=conv_init(),
                groups=cardinality,
            )
            self.bn2 = bn(width)
            self.conv3 = conv1x1(width, out_ch)
            self.bn3 = bn(out_ch)
            if self.project:
                self.shortcut = conv1x1(in_ch, out_ch, stride)
                self.shortcut_bn = bn(out_ch)

    def transform(self, x: chainer.Variable) -> chainer.Variable:
        r""":math:`\sum_i \mathcal{T}_i(\mathbf{x})` as three convolutions, the middle one grouped."""
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        return self.conv3(h)

    def paths(self, x: chainer.Variable) -> list[chainer.Variable]:
        r"""The :math:`C` terms :math:`\mathcal{T}_i(\mathbf{x})`, each computed on its own
        from slices of the same weights (the split-transform-merge form; for checking)."""
        d = self.conv1.W.shape[0] // self.cardinality
        train = chainer.config.train

        def norm(link: L.BatchNormalization, h: chainer.Variable, s: slice) -> chainer.Variable:
            if train:  # batch statistics are per channel, so slicing them is exact
                return F.batch_normalization(h, link.gamma[s], link.beta[s], eps=link.eps)
            return F.fixed_batch_normalization(
                h, link.gamma[s], link.beta[s], link.avg_mean[s], link.avg_var[s], link.eps
            )

        out = []
        for i in range(self.cardinality):
            s = slice(i * d, (i + 1) * d)
            h = F.relu(norm(self.bn1, F.convolution_2d(x, self.conv1.W[s]), s))
            h = F.convolution_2d(h, self.conv2.W[s], stride=self.stride, pad=1)
            h = F.relu(norm(self.bn2, h, s))
            out.append(F.convolution_2d(h, self.conv3.W[:, s]))
        return out

    def skip(self, x: chainer.Variable) -> chainer.Variable:
        """Identity, or 1x1 projection and BN where the width changes."""
        if self.project:
            return self.shortcut_bn(self.shortcut(x))
        return chainer.as_variable(x)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        r""":math:`\mathrm{ReLU}(s(\mathbf{x}) + \mathrm{BN}(\sum_i \mathcal{T}_i(\mathbf{x})))`."""
        return F.relu(self.skip(x) + self.bn3(self.transform(x)))


class ResNeXtCifar(chainer.Chain):
    """ResNeXt-(9n+2) C x d for 32x32 inputs."""

    def __init__(
        self,
        depth: int = 29,
        cardinality: int = 8,
        base_width: int = 64,
        n_classes: int = 10,
        base_channels: int = 64,
    ) -> None:
        super().__init__()
        if depth < 11 or (depth - 2) % 9:
            raise ValueError(f"ResNeXt depth must be 9n+2, got {depth}")
        n = (depth - 2) // 9
        # base_channels b = 64 is the paper's network (stem b, stage outputs 4b, 8b, 16b);
        # a smaller b gives small siblings with the same per-path widths d, 2d, 4d.
        b = base_channels
        with self.init_scope():
            self.conv1 = conv3x3(3, b)
            self.bn1 = bn(b)
            self.blocks = chainer.ChainList()
            in_ch = b
            for stage, planes in enumerate((b, 2 * b, 4 * b)):
                d = base_width * 2**stage  # per-path width, floor(planes * d / 64) for b = 64
                for i in range(n):
                    stride = 2 if stage > 0 and i == 0 else 1
                    self.blocks.append(
                        ResNeXtBlock(in_ch, cardinality * d, 4 * planes, cardinality, stride)
                    )
                    in_ch = 4 * planes
            self.head = ClassifierHead(in_ch, n_classes)

    def forward(self, x: chainer.Variable) -> chainer.Variable:
        """Class scores (logits) for a batch of 3x32x32 images."""
        h = F.relu(self.bn1(self.conv1(x)))
        for block in self.blocks:
            h = block(h)
        return self.head(h)


# name, cardinality C, width d, paper's C10 error %, paper's parameter count (M): Table 7.
# The paper's figures are the convolution and linear weights: counting BN and the
# classifier's bias as well gives 34.43M and 68.16M, and 68.16 would round to 68.2.
for _name, _c, _d, _err, _params in [
    ("resnext29_8x64d", 8, 64, 3.65, "34.4"),
    ("resnext29_16x64d", 16, 64, 3.58, "68.1"),
]:
    register(
        ModelInfo(
            name=_name,
            factory=ResNeXtCifar,
            kwargs={"depth": 29, "cardinality": _c, "base_width": _d},
            paper_no=23,
            paper=PAPER,
            arxiv=ARXIV,
            recipe="resnext",
            paper_accuracy=round(100 - _err, 2),
            paper_params=_params,
            params_counting="weights",
            description=f"ResNeXt-29 ({_c}x{_d}d)",
        )
    )
