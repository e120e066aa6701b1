"""PyTorch CPU reference models, architecture-identical to chainer_nets' resnet/WRN.

Used only by the benchmark (its own environment); the chainer_nets package never imports torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (as chainer_nets.blocks.conv3x3)."""
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def _bn(c: int) -> nn.BatchNorm2d:
    """Batch normalization with eps 1e-5 and Chainer's decay 0.9 (momentum 0.1)."""
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)


class BasicBlock(nn.Module):
    """Post-activation basic block with the parameter-free option-A shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.cout, self.stride = cout, stride
        self.conv1, self.bn1 = _conv3x3(cin, cout, stride), _bn(cout)
        self.conv2, self.bn2 = _conv3x3(cout, cout), _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))."""
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        s = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        extra = self.cout - s.shape[1]
        if extra > 0:
            s = torch.cat([s, s.new_zeros((s.shape[0], extra, *s.shape[2:]))], dim=1)
        return F.relu(h + s)


class ResNetCifar(nn.Module):
    """CIFAR ResNet-(6n+2) of He et al. 2015 (Section 4.2)."""

    def __init__(self, n: int, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(3, widths[0]), _bn(widths[0])
        blocks, cin = [], widths[0]
        for stage, w in enumerate(widths):
            for i in range(n):
                blocks.append(BasicBlock(cin, w, 2 if stage > 0 and i == 0 else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores."""
        h = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(h.mean(dim=(2, 3)))


class WideBasic(nn.Module):
    """Pre-activation wide block with a 1x1 projection shortcut where shapes change."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = _bn(cin), _conv3x3(cin, cout, stride)
        self.bn2, self.conv2 = _bn(cout), _conv3x3(cout, cout)
        self.project = cin != cout or stride != 1
        if self.project:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv(ReLU(BN(conv(ReLU(BN(x)))))) + shortcut."""
        a = F.relu(self.bn1(x))
        h = self.conv2(F.relu(self.bn2(self.conv1(a))))
        return h + (self.shortcut(a) if self.project else x)


class WideResNet(nn.Module):
    """WRN-depth-k of Zagoruyko & Komodakis 2016."""

    def __init__(self, depth: int, widen: int) -> None:
        super().__init__()
        n = (depth - 4) // 6
        self.conv1 = _conv3x3(3, 16)
        blocks, cin = [], 16
        for stage, w in enumerate((16 * widen, 32 * widen, 64 * widen)):
            for i in range(n):
                blocks.append(WideBasic(cin, w, 2 if stage > 0 and i == 0 else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.bn, self.fc = _bn(cin), nn.Linear(cin, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores."""
        h = F.relu(self.bn(self.blocks(self.conv1(x))))
        return self.fc(h.mean(dim=(2, 3)))


def get_torch_model(name: str) -> nn.Module:
    """Build the PyTorch twin of ``chainer_nets.get_model(name)``."""
    if name.startswith("resnet"):
        return ResNetCifar((int(name[6:]) - 2) // 6)
    if name.startswith("wrn"):
        depth, k = (int(v) for v in name[3:].split("_"))
        return WideResNet(depth, k)
    raise KeyError(name)
