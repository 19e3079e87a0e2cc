"""ResNet-18 for CIFAR-10, with basic blocks and 1x1 stride-2 projection shortcuts.

Paper: "Deep Residual Learning for Image Recognition", K. He, X. Zhang, S. Ren, J. Sun, 2015,
arXiv:1512.03385.

Kept: two 3x3 convs per basic block with BN, identity shortcuts inside a stage and projection
shortcuts (option B: 1x1 conv, stride 2, + BN) where the shape changes, four stages of two blocks
doubling the width and halving the map, global 4x4 average pooling and one linear layer.
CIFAR changes (the usual ones): a 3x3 stride-1 stem and no max-pool, so 32x32 maps reach 4x4.
Scaled down: the stem width `width` defaults to 6 (the paper's ImageNet net starts at 64), so the
tests stay fast; `resnet18(width=64)` is the standard 11,173,962-parameter CIFAR ResNet-18.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers; the input is added back before the last ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv_a = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(out_ch)
        self.conv_b = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(out_ch)
        if stride == 1 and in_ch == out_ch:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn_a(self.conv_a(x)))
        out = self.bn_b(self.conv_b(out))
        out += self.shortcut(x)
        return F.relu(out)


def stage(in_ch: int, out_ch: int, blocks: int, stride: int) -> nn.Sequential:
    """`blocks` basic blocks; only the first changes width or resolution."""
    return nn.Sequential(*(BasicBlock(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1)
                           for i in range(blocks)))


class ResNet18(nn.Module):
    def __init__(self, width: int = 6, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        self.stage1 = stage(width, width, 2, 1)
        self.stage2 = stage(width, 2 * width, 2, 2)
        self.stage3 = stage(2 * width, 4 * width, 2, 2)
        self.stage4 = stage(4 * width, 8 * width, 2, 2)
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stage4(self.stage3(self.stage2(self.stage1(self.stem(x)))))
        out = F.avg_pool2d(out, 4)
        return self.fc(out.view(out.size(0), -1))


def resnet18(width: int = 6, num_classes: int = 10) -> ResNet18:
    return ResNet18(width, num_classes)
