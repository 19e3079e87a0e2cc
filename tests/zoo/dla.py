"""DLA for CIFAR-10: hierarchical deep aggregation, trees of residual blocks merged by aggregation nodes.

Paper: "Deep Layer Aggregation", F. Yu, D. Wang, E. Shelhamer, T. Darrell, 2017, arXiv:1707.06484.

Kept: the tree T_n of eqs. (1)-(2): a chain of subtrees T_{n-1}, ..., T_1 then two conv blocks,
every one of those n + 1 outputs fed to one aggregation node N (1x1 conv over their
concatenation, BN, ReLU), so each node sees its children at every depth; residual basic blocks
(1x1 stride-2 projection where the shape changes) as the conv blocks; DLA-34's stage depths
(1, 2, 2, 1) after a base of plain 3x3 conv layers, stride 2 at the first block of stages 2-4;
global average pooling and a linear classifier.
Simplified: the stage input is not also fed to the tree's top node (the paper's link from a
stage's input to its root); stages are chained.
CIFAR changes: a 3x3 stride-1 base; 32x32 reaches 4x4.
Scaled down: stage widths (6, 12, 24, 36) and base width 6 (DLA-34: 64 ... 512 after a base of 16, 32).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResidualBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch))
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.convs(x) + self.shortcut(x), inplace=True)


class Aggregation(nn.Module):
    """The aggregation node N: one 1x1 conv over the concatenated children, BN, ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, children: list[torch.Tensor]) -> torch.Tensor:
        return F.relu(self.bn(self.conv(torch.cat(children, 1))), inplace=True)


class Tree(nn.Module):
    """T_n(x) = N(R_{n-1}(x), ..., R_1(x), L_1(x), L_2(x)), with R_{n-1} = T_{n-1}(x), R_m = T_m(R_{m+1})."""

    def __init__(self, depth: int, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.subtrees = nn.ModuleList()
        for m in range(depth - 1, 0, -1):
            self.subtrees.append(Tree(m, in_ch, out_ch, stride))
            in_ch, stride = out_ch, 1
        self.block1 = ResidualBlock(in_ch, out_ch, stride)
        self.block2 = ResidualBlock(out_ch, out_ch, 1)
        self.node = Aggregation((depth + 1) * out_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        children = []
        for subtree in self.subtrees:
            x = subtree(x)
            children.append(x)
        x = self.block1(x)
        children.append(x)
        children.append(self.block2(x))
        return self.node(children)


class DLA(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (6, 12, 24, 36), depths: tuple[int, ...] = (1, 2, 2, 1),
                 base: int = 6, num_classes: int = 10):
        super().__init__()
        self.base = nn.Sequential(
            nn.Conv2d(3, base, 3, padding=1, bias=False), nn.BatchNorm2d(base), nn.ReLU(inplace=True),
            nn.Conv2d(base, base, 3, padding=1, bias=False), nn.BatchNorm2d(base), nn.ReLU(inplace=True))
        trees, ch = [], base
        for i, (width, depth) in enumerate(zip(widths, depths)):
            trees.append(Tree(depth, ch, width, 1 if i == 0 else 2))
            ch = width
        self.trees = nn.Sequential(*trees)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.trees(self.base(x))
        out = F.avg_pool2d(out, out.size(3))
        return self.fc(torch.flatten(out, 1))


def dla(widths: tuple[int, ...] = (6, 12, 24, 36), depths: tuple[int, ...] = (1, 2, 2, 1),
        num_classes: int = 10) -> DLA:
    return DLA(widths, depths, num_classes=num_classes)
