"""SE-ResNet-18 for CIFAR-10: residual basic blocks gated by squeeze-and-excitation.

Paper: "Squeeze-and-Excitation Networks", J. Hu, L. Shen, S. Albanie, G. Sun, E. Wu, 2017,
arXiv:1709.01507.

Kept: the SE block as the paper draws it for residual nets (global average pool "squeeze", two
fully connected layers C -> C/r -> C with ReLU then sigmoid "excitation", channel-wise rescaling
of the residual branch before the identity is added), on ResNet-18's four stages of two basic
blocks with 1x1 stride-2 projection shortcuts.
CIFAR changes: a 3x3 stride-1 stem without max-pool; adaptive average pooling before the
classifier.
Scaled down: stem width 6 (64 in the paper's ResNets) and reduction r = 4 instead of 16, so the
squeezed vector keeps more than one unit at these widths.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SqueezeExcite(nn.Module):
    """Per-channel gates from the globally pooled map, through two linear layers."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.excite = nn.Sequential(nn.Linear(channels, max(1, channels // reduction)), nn.ReLU(inplace=True),
                                    nn.Linear(max(1, channels // reduction), channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, _, _ = x.size()
        gates = self.excite(F.adaptive_avg_pool2d(x, 1).view(b, c))
        return x * gates.view(b, c, 1, 1)


class SEBasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, reduction: int):
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
            SqueezeExcite(out_ch, reduction))
        self.project = None
        if stride != 1 or in_ch != out_ch:
            self.project = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                         nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        out += x if self.project is None else self.project(x)
        return F.relu(out, inplace=True)


class SEResNet18(nn.Module):
    def __init__(self, width: int = 6, reduction: int = 4, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        blocks, ch = [], width
        for i, out_ch in enumerate((width, 2 * width, 4 * width, 8 * width)):
            for j in range(2):
                blocks.append(SEBasicBlock(ch, out_ch, 2 if i > 0 and j == 0 else 1, reduction))
                ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(self.blocks(self.stem(x)))
        return self.fc(out.view(out.size(0), -1))


def senet18(width: int = 6, reduction: int = 4, num_classes: int = 10) -> SEResNet18:
    return SEResNet18(width, reduction, num_classes)
