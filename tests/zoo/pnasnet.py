"""PNASNet-style network for CIFAR-10: cells of five blocks, each the sum of two operators.

Paper: "Progressive Neural Architecture Search", C. Liu, B. Zoph, M. Neumann, J. Shlens, W. Hua,
L.-J. Li, L. Fei-Fei, A. Yuille, J. Huang, K. Murphy, 2017, arXiv:1712.00559.

Kept: the cell structure of the search space: B = 5 blocks, each adding the results of two
operators applied to the cell input or to earlier blocks, the operators drawn from the paper's
set (3x3 / 5x5 / 7x7 depthwise-separable convs, 1x7 then 7x1 conv, 3x3 dilated conv, 3x3 max
and average pooling, identity), the block outputs concatenated along channels; ReLU-conv-BN
operators; a 1x1 conv fitting the cell input to the cell width; stride-2 reduction cells (same
structure, stride 2 on the ops that read the cell input, identity replaced by a 1x1 stride-2
conv) doubling the width between stages; global average pooling and a linear classifier.
Simplified: one fixed cell (our own pick of operators, not the searched PNASNet-5 cell) that
reads only the previous cell, not the one before it.
Scaled down: cell width 6 and one normal cell per stage (the paper's CIFAR model stacks
several normal cells of 48 filters).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def separable(ch: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(),
                         nn.Conv2d(ch, ch, kernel, stride=stride, padding=kernel // 2, groups=ch, bias=False),
                         nn.Conv2d(ch, ch, 1, bias=False), nn.BatchNorm2d(ch))


def dilated(ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, 3, stride=stride, padding=2, dilation=2, bias=False),
                         nn.BatchNorm2d(ch))


def factorized7(ch: int, stride: int) -> nn.Sequential:
    """A 1x7 conv then a 7x1 conv: a 7x7 receptive field at two thin kernels' cost."""
    return nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, (1, 7), stride=stride, padding=(0, 3), bias=False),
                         nn.Conv2d(ch, ch, (7, 1), padding=(3, 0), bias=False), nn.BatchNorm2d(ch))


class Cell(nn.Module):
    def __init__(self, in_ch: int, ch: int, stride: int):
        super().__init__()
        self.fit = nn.Sequential(nn.Conv2d(in_ch, ch, 1, bias=False), nn.BatchNorm2d(ch))
        self.sep5 = separable(ch, 5, stride)
        self.max_a = nn.MaxPool2d(3, stride=stride, padding=1)
        self.sep3 = separable(ch, 3, stride)
        self.skip = (nn.Identity() if stride == 1 else
                     nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, 1, stride=stride, bias=False), nn.BatchNorm2d(ch)))
        self.dil3 = dilated(ch, stride)
        self.avg = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        self.fac7 = factorized7(ch, stride)
        self.max_b = nn.MaxPool2d(3, stride=stride, padding=1)
        self.sep7 = separable(ch, 7, 1)
        self.out_ch = 5 * ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fit(x)
        b1 = self.sep5(h) + self.max_a(h)
        b2 = self.sep3(h) + self.skip(h)
        b3 = self.dil3(h) + self.avg(h)
        b4 = self.fac7(h) + self.max_b(h)
        b5 = self.sep7(b1) + b2
        return torch.cat([b1, b2, b3, b4, b5], dim=1)


class PNASNet(nn.Module):
    def __init__(self, width: int = 6, cells_per_stage: int = 1, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width))
        cells, ch = [], 2 * width
        for stage in range(3):
            if stage > 0:
                cells.append(Cell(ch, width << stage, 2))
                ch = cells[-1].out_ch
            for _ in range(cells_per_stage):
                cells.append(Cell(ch, width << stage, 1))
                ch = cells[-1].out_ch
        self.cells = nn.Sequential(*cells)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.cells(self.stem(x)))
        return self.fc(torch.flatten(self.pool(out), 1))


def pnasnet(width: int = 6, cells_per_stage: int = 1, num_classes: int = 10) -> PNASNet:
    return PNASNet(width, cells_per_stage, num_classes)
