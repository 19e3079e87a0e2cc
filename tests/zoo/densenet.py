"""DenseNet-BC for CIFAR-10: dense blocks whose layers read the concatenation of all earlier maps.

Paper: "Densely Connected Convolutional Networks", G. Huang, Z. Liu, L. van der Maaten,
K. Q. Weinberger, 2016, arXiv:1608.06993.

Kept: the BC form used on CIFAR: each layer is BN-ReLU-1x1 conv (4k channels) then
BN-ReLU-3x3 conv (k channels, the growth rate) applied to the concatenation of the block input
and every earlier layer's output; transitions (BN-ReLU-1x1 conv to theta = 0.5 of the channels,
2x2 average pool) between three dense blocks; a 3x3 stem conv of 2k channels; final BN-ReLU,
global average pooling and a linear classifier.
Scaled down: growth rate k = 6 and 4 layers per block (DenseNet-BC-100 has k = 12 and 16).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv to 4k, BN-ReLU-3x3 conv to k; returns only the k new channels."""

    def __init__(self, in_ch: int, growth: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        return self.conv2(F.relu(self.bn2(out)))


class DenseBlock(nn.Module):
    def __init__(self, in_ch: int, growth: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(in_ch + i * growth, growth) for i in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [x]
        for layer in self.layers:
            maps.append(layer(torch.cat(maps, 1)))
        return torch.cat(maps, 1)


class Transition(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True), nn.Conv2d(in_ch, out_ch, 1, bias=False),
                         nn.AvgPool2d(2))


class DenseNet(nn.Module):
    def __init__(self, growth: int = 6, layers: tuple[int, ...] = (4, 4, 4), reduction: float = 0.5,
                 num_classes: int = 10):
        super().__init__()
        ch = 2 * growth
        self.stem = nn.Conv2d(3, ch, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i, n in enumerate(layers):
            stages.append(DenseBlock(ch, growth, n))
            ch += n * growth
            if i < len(layers) - 1:
                out_ch = int(math.floor(ch * reduction))
                stages.append(Transition(ch, out_ch))
                ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(ch)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.stages(self.stem(x))))
        out = F.avg_pool2d(out, out.size(3))
        return self.fc(out.view(out.size(0), -1))


def densenet(growth: int = 6, layers: tuple[int, ...] = (4, 4, 4), num_classes: int = 10) -> DenseNet:
    return DenseNet(growth, layers, num_classes=num_classes)
