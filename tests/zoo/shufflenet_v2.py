"""ShuffleNet v2 for CIFAR-10: channel split, a light branch, concatenation, channel shuffle.

Paper: "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design", N. Ma,
X. Zhang, H.-T. Zheng, J. Sun, 2018, arXiv:1807.11164.

Kept: the basic unit of Fig. 3(c) (split the channels into c' and c - c'; one part passes
unchanged, the other goes through 1x1 conv-BN-ReLU, 3x3 depthwise conv-BN, 1x1 conv-BN-ReLU;
concatenate; shuffle with 2 groups), the downsampling unit of Fig. 3(d) (no split; both branches
see the input, the left one a stride-2 depthwise conv and a 1x1 conv, the right one the basic
unit's convs with a stride-2 depthwise; concatenate; shuffle), three stages each opened by a
downsampling unit, a final 1x1 conv, global average pooling and a linear classifier.
CIFAR changes: a 3x3 stride-1 stem conv and no max-pool, so 32x32 reaches 4x4.
Scaled down: stage widths (16, 32, 64) and final conv 128 (the 0.5x net has 48, 96, 192 and 1024),
stage repeats (2, 3, 2) instead of (4, 8, 4).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of `groups` equal groups (the paper's shuffle operation)."""
    b, c, h, w = x.size()
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


def branch(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """1x1 conv-BN-ReLU, 3x3 depthwise conv-BN (no ReLU), 1x1 conv-BN-ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, stride=stride, padding=1, groups=out_ch, bias=False), nn.BatchNorm2d(out_ch),
        nn.Conv2d(out_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class BasicUnit(nn.Module):
    def __init__(self, channels: int, split_ratio: float = 0.5):
        super().__init__()
        self.split_ratio = split_ratio
        kept = int(channels * split_ratio)
        self.branch = branch(channels - kept, channels - kept, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = int(x.size(1) * self.split_ratio)
        identity, rest = torch.split(x, [kept, x.size(1) - kept], dim=1)
        return channel_shuffle(torch.cat([identity, self.branch(rest)], 1), 2)


class DownUnit(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        half = out_ch // 2
        self.left = nn.Sequential(
            nn.Conv2d(in_ch, in_ch, 3, stride=2, padding=1, groups=in_ch, bias=False), nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True))
        self.right = branch(in_ch, out_ch - half, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], 1), 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), repeats: tuple[int, ...] = (2, 3, 2),
                 stem: int = 12, last: int = 128, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU(inplace=True))
        stages, ch = [], stem
        for width, n in zip(widths, repeats):
            stages.append(nn.Sequential(DownUnit(ch, width), *(BasicUnit(width) for _ in range(n - 1))))
            ch = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.Conv2d(ch, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU(inplace=True))
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.stages(self.stem(x)))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.fc(out.view(out.size(0), -1))


def shufflenet_v2(widths: tuple[int, ...] = (16, 32, 64), repeats: tuple[int, ...] = (2, 3, 2),
                  num_classes: int = 10) -> ShuffleNetV2:
    return ShuffleNetV2(widths, repeats, num_classes=num_classes)
