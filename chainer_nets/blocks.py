"""Pieces several papers share: conv/BN constructors, shortcuts, classifier heads.

Conventions used by every model in the package:

* Convolutions feeding a batch normalization have no bias, and are initialised
  with He's normal initialisation counted over the output fan
  (:math:`\\mathcal{N}(0, 2/(k^2 C_{out}))`, as in fb.resnet.torch and the WRN code).
  :func:`conv_init` is the one place this is chosen.
* Batch normalization uses Torch's defaults (eps 1e-5, running-average decay 0.9),
  which the papers' reference code used.
"""

from __future__ import annotations

import chainer
import chainer.functions as F
import chainer.links as L
from chainer import initializers


def conv_init() -> initializers.HeNormal:
    """He-normal initializer over the output fan, used by every convolution."""
    return initializers.HeNormal(fan_option="fan_out")


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> L.Convolution2D:
    """3x3 convolution, padding 1, no bias."""
    return L.Convolution2D(in_ch, out_ch, 3, stride, 1, nobias=True, initialW=conv_init())


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> L.Convolution2D:
    """1x1 convolution, no padding, no bias."""
    return L.Convolution2D(in_ch, out_ch, 1, stride, 0, nobias=True, initialW=conv_init())


def bn(channels: int) -> L.BatchNormalization:
    """Batch normalization with Torch's eps and decay."""
    return L.BatchNormalization(channels, eps=1e-5, decay=0.9)


def zero_pad_shortcut(x: chainer.Variable, out_ch: int, stride: int) -> chainer.Variable:
    """Parameter-free shortcut ("option A"): sub-sample by ``stride``, append zero channels."""
    if stride > 1:
        x = x[:, :, ::stride, ::stride]
    extra = out_ch - x.shape[1]
    if extra > 0:
        xp = chainer.backend.get_array_module(x)
        zeros = xp.zeros((x.shape[0], extra) + x.shape[2:], dtype=x.dtype)
        x = F.concat((x, zeros), axis=1)
    return x


class ClassifierHead(chainer.Chain):
    """Global average pooling followed by a fully connected layer to the class scores."""

    def __init__(self, in_ch: int, n_classes: int = 10) -> None:
        super().__init__()
        with self.init_scope():
            self.fc = L.Linear(in_ch, n_classes)

    def forward(self, h: chainer.Variable) -> chainer.Variable:
        """Average each channel over space, then map to ``n_classes`` scores."""
        return self.fc(F.mean(h, axis=(2, 3)))


class PreActHead(chainer.Chain):
    """Final BN-ReLU of a pre-activation network, then :class:`ClassifierHead`."""

    def __init__(self, in_ch: int, n_classes: int = 10) -> None:
        super().__init__()
        with self.init_scope():
            self.bn = bn(in_ch)
            self.head = ClassifierHead(in_ch, n_classes)

    def forward(self, h: chainer.Variable) -> chainer.Variable:
        """BN, ReLU, global average pool, fully connected."""
        return self.head(F.relu(self.bn(h)))
