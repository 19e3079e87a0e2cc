"""ResNeXt-29 for CIFAR-10: bottleneck blocks whose 3x3 conv is split into `cardinality` groups.

Paper: "Aggregated Residual Transformations for Deep Neural Networks", S. Xie, R. Girshick,
P. Dollar, Z. Tu, K. He, 2016, arXiv:1611.05431.

Kept: the CIFAR network of the paper's Sec. 5.3: a 3x3 stem conv, three stages of three
bottleneck blocks (1x1 conv to C x d channels, 3x3 grouped conv with C groups and the stage's
stride, 1x1 conv to the block output, BN after each, ReLU; form (c) of Fig. 3), bottleneck and
output widths doubling per stage, stride-2 3x3 convs at the start of stages 2 and 3, 1x1 stride-2
projection shortcuts, 8x8 global average pooling and a linear classifier.
Scaled down: cardinality C = 4 and bottleneck width d = 2 (the paper's nets are 8x64d and
16x64d), stem 16 and first-stage output 32 channels (64 and 256 in the paper).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResNeXtBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, cardinality: int, group_width: int, stride: int):
        super().__init__()
        inner = cardinality * group_width
        self.reduce = nn.Conv2d(in_ch, inner, 1, bias=False)
        self.bn_reduce = nn.BatchNorm2d(inner)
        self.grouped = nn.Conv2d(inner, inner, 3, stride=stride, padding=1, groups=cardinality, bias=False)
        self.bn_grouped = nn.BatchNorm2d(inner)
        self.expand = nn.Conv2d(inner, out_ch, 1, bias=False)
        self.bn_expand = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn_reduce(self.reduce(x)))
        out = F.relu(self.bn_grouped(self.grouped(out)))
        out = self.bn_expand(self.expand(out))
        out += self.shortcut(x)
        return F.relu(out)


class ResNeXt29(nn.Module):
    def __init__(self, cardinality: int = 4, group_width: int = 2, stem: int = 16, out_width: int = 32,
                 blocks: int = 3, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
        layers, ch = [], stem
        for stage in range(3):
            for i in range(blocks):
                out_ch = out_width << stage
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(ResNeXtBlock(ch, out_ch, cardinality, group_width << stage, stride))
                ch = out_ch
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.avg_pool2d(self.layers(self.stem(x)), 8)
        return self.fc(out.view(out.size(0), -1))


def resnext29(cardinality: int = 4, group_width: int = 2, blocks: int = 3, num_classes: int = 10) -> ResNeXt29:
    return ResNeXt29(cardinality, group_width, blocks=blocks, num_classes=num_classes)
