"""Res2Net for CIFAR-10: bottlenecks whose 3x3 conv is a hierarchy over `scale` channel groups.

Paper: "Res2Net: A New Multi-scale Backbone Architecture", S.-H. Gao, M.-M. Cheng, K. Zhao,
X.-Y. Zhang, M.-H. Yang, P. Torr, 2019, arXiv:1904.01169.

Kept: the Res2Net module of Fig. 2(b): a 1x1 conv, its output split into s equal groups x_1 ...
x_s; y_1 = x_1, y_2 = K_2(x_2), y_i = K_i(x_i + y_{i-1}) with 3x3 conv-BN-ReLU K_i; the s outputs
concatenated and fused by a 1x1 conv; BN after each conv, the block input (or its 1x1 stride-2
projection) added, ReLU; ResNet-style stages doubling the width.
Simplified: stride-2 blocks put the stride in the first 1x1 conv (as the original ResNet did) so
that every group shares one resolution.
CIFAR changes: a 3x3 stride-1 stem, three stages (32, 16, 8), global average pooling, linear.
Scaled down: scale s = 4 groups of width 2 in the first stage and two blocks per stage
(Res2Net-50 has s = 4 groups of 26 and (3, 4, 6, 3) blocks).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Res2Block(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, group_width: int, scale: int, stride: int):
        super().__init__()
        inner = group_width * scale
        self.scale = scale
        self.reduce = nn.Sequential(nn.Conv2d(in_ch, inner, 1, stride=stride, bias=False), nn.BatchNorm2d(inner),
                                    nn.ReLU(inplace=True))
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(group_width, group_width, 3, padding=1, bias=False),
                          nn.BatchNorm2d(group_width), nn.ReLU(inplace=True))
            for _ in range(scale - 1))
        self.fuse = nn.Sequential(nn.Conv2d(inner, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = self.reduce(x).chunk(self.scale, dim=1)
        outputs = [groups[0]]
        y = None
        for conv, g in zip(self.convs, groups[1:]):
            y = conv(g if y is None else g + y)
            outputs.append(y)
        out = self.fuse(torch.cat(outputs, dim=1))
        out += self.shortcut(x)
        return F.relu(out)


class Res2Net(nn.Module):
    def __init__(self, group_width: int = 2, scale: int = 4, stem: int = 8, out_width: int = 16,
                 blocks: int = 2, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU(inplace=True))
        layers, ch = [], stem
        for stage in range(3):
            for i in range(blocks):
                out_ch = out_width << stage
                layers.append(Res2Block(ch, out_ch, group_width << stage, scale, 2 if stage > 0 and i == 0 else 1))
                ch = out_ch
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1)
        return self.fc(torch.flatten(out, 1))


def res2net(group_width: int = 2, scale: int = 4, blocks: int = 2, num_classes: int = 10) -> Res2Net:
    return Res2Net(group_width, scale, blocks=blocks, num_classes=num_classes)
