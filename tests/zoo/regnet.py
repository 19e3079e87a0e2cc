"""RegNetY for CIFAR-10: stages of grouped-bottleneck residual blocks with squeeze-excitation.

Paper: "Designing Network Design Spaces", I. Radosavovic, R. P. Kosaraju, R. Girshick, K. He,
P. Dollar, 2020, arXiv:2003.13678.

Kept: the AnyNet structure (stem, four stages, head of average pooling and a linear layer) and
the Y block: 1x1 conv-BN-ReLU, 3x3 group conv (groups of `group_width` channels) with the
stage's stride, BN-ReLU, squeeze-excitation on a quarter of the block's input width, 1x1
conv-BN, shortcut (1x1 stride-2 conv-BN where the shape changes) added, ReLU; bottleneck ratio 1.
`se_ratio=0` gives the X block (RegNetX).
CIFAR changes: the stem and the first stage keep stride 1, so 32x32 reaches 4x4.
Scaled down: widths (8, 16, 32, 64) and depths (1, 1, 2, 2) with group width 4; RegNetY-200MF
has widths (24, 56, 152, 368), depths (1, 1, 4, 7), group width 8.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


class YBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, group_width: int, se_ratio: float):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, stride=stride, padding=1, groups=out_ch // group_width, bias=False),
            nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
        if se_ratio > 0:
            layers.append(SqueezeExcite(out_ch, max(1, int(in_ch * se_ratio))))
        layers += [nn.Conv2d(out_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class RegNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 64), depths: tuple[int, ...] = (1, 1, 2, 2),
                 group_width: int = 4, se_ratio: float = 0.25, stem: int = 8, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU(inplace=True))
        stages, ch = [], stem
        for i, (width, depth) in enumerate(zip(widths, depths)):
            blocks = []
            for j in range(depth):
                blocks.append(YBlock(ch, width, 2 if i > 0 and j == 0 else 1, group_width, se_ratio))
                ch = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(ch, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def regnet_y(widths: tuple[int, ...] = (8, 16, 32, 64), depths: tuple[int, ...] = (1, 1, 2, 2),
             group_width: int = 4, se_ratio: float = 0.25, num_classes: int = 10) -> RegNet:
    return RegNet(widths, depths, group_width, se_ratio, num_classes=num_classes)
