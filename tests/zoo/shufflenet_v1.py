"""ShuffleNet (v1) for CIFAR-10: grouped 1x1 convs with a channel shuffle between them.

Paper: "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
X. Zhang, X. Zhou, M. Lin, J. Sun, 2017, arXiv:1707.01083.

Kept: the ShuffleNet unit of Fig. 2(b) (1x1 group conv-BN-ReLU, channel shuffle, 3x3 depthwise
conv-BN, 1x1 group conv-BN, identity added, ReLU) and its stride-2 form of Fig. 2(c) (3x3
stride-2 average pool on the shortcut, stride-2 depthwise conv, the two concatenated, ReLU);
bottleneck width a quarter of the unit's output; no grouping on the first 1x1 conv of the first
stage (its input is narrow); three stages each opened by a stride-2 unit; global average
pooling and a linear classifier; g = 3 groups.
CIFAR changes: a 3x3 stride-1 stem and no max-pool, so 32x32 reaches 4x4.
Scaled down: stem 12 and stage widths (48, 96, 192) with two units per stage; the g = 3 net
has 24 and (240, 480, 960) with (4, 8, 4) units.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Reorder channels so that each group of the next group conv sees every group of the last."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).permute(0, 2, 1, 3, 4).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, groups: int, stride: int, group_first: bool = True):
        super().__init__()
        self.stride = stride
        self.groups = groups
        branch_out = out_ch - in_ch if stride == 2 else out_ch
        mid = out_ch // 4
        self.squeeze = nn.Sequential(nn.Conv2d(in_ch, mid, 1, groups=groups if group_first else 1, bias=False),
                                     nn.BatchNorm2d(mid), nn.ReLU(inplace=True))
        self.depthwise = nn.Sequential(nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False),
                                       nn.BatchNorm2d(mid))
        self.expand = nn.Sequential(nn.Conv2d(mid, branch_out, 1, groups=groups, bias=False),
                                    nn.BatchNorm2d(branch_out))
        if stride == 2:
            self.pool = nn.AvgPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = shuffle(self.squeeze(x), self.groups)
        out = self.expand(self.depthwise(out))
        if self.stride == 2:
            return F.relu(torch.cat([self.pool(x), out], 1))
        return F.relu(out + x)


class ShuffleNetV1(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (48, 96, 192), units: int = 2, groups: int = 3, stem: int = 12,
                 num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU(inplace=True))
        stages, ch = [], stem
        for i, width in enumerate(widths):
            stage = [ShuffleUnit(ch, width, groups, 2, group_first=i > 0)]
            stage += [ShuffleUnit(width, width, groups, 1) for _ in range(units - 1)]
            stages.append(nn.Sequential(*stage))
            ch = width
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.avg_pool2d(self.stages(self.stem(x)), 4)
        return self.fc(out.view(out.size(0), -1))


def shufflenet_v1(widths: tuple[int, ...] = (48, 96, 192), units: int = 2, groups: int = 3,
                  num_classes: int = 10) -> ShuffleNetV1:
    return ShuffleNetV1(widths, units, groups, num_classes=num_classes)
