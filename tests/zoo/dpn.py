"""Dual Path Network for CIFAR-10: each block adds to a residual path and appends to a dense path.

Paper: "Dual Path Networks", Y. Chen, J. Li, H. Xiao, X. Jin, S. Yan, J. Feng, 2017,
arXiv:1707.01629.

Kept: the dual path block of Fig. 2(e): the block reads the concatenation [residual | dense];
one shared bottleneck (1x1 conv, 3x3 grouped conv, 1x1 conv, BN after each) produces d + k
channels; the first d are added to the residual path (ResNet-like feature re-use), the last k are
concatenated to the dense path (DenseNet-like exploration). The first block of each stage
projects its input with a 1x1 conv (stride 2 from the second stage on) into a fresh residual
path and a dense path of 2k channels. Four stages, global average pooling, a linear classifier.
CIFAR changes: a 3x3 stride-1 stem without max-pool; 32x32 reaches 4x4.
Scaled down: inner widths (8, 16, 32, 64), residual widths d (16, 32, 64, 128), dense
increments k (4, 8, 8, 16), 4 groups and two blocks per stage; DPN-92 has inner widths
96 ... 768, d 256 ... 2048, k 16 ... 128, 32 groups and (3, 4, 20, 3) blocks.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class DualPathBlock(nn.Module):
    def __init__(self, in_ch: int, inner: int, res_ch: int, dense_inc: int, groups: int, stride: int, first: bool):
        super().__init__()
        self.res_ch = res_ch
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, inner, 1, bias=False), nn.BatchNorm2d(inner), nn.ReLU(inplace=True),
            nn.Conv2d(inner, inner, 3, stride=stride, padding=1, groups=groups, bias=False), nn.BatchNorm2d(inner),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, res_ch + dense_inc, 1, bias=False), nn.BatchNorm2d(res_ch + dense_inc))
        self.project = None
        if first:
            self.project = nn.Sequential(nn.Conv2d(in_ch, res_ch + 2 * dense_inc, 1, stride=stride, bias=False),
                                         nn.BatchNorm2d(res_ch + 2 * dense_inc))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.res_ch
        out = self.body(x)
        res_inc, dense_new = torch.split(out, [d, out.size(1) - d], dim=1)
        if self.project is not None:
            x = self.project(x)
        residual = x[:, :d, :, :] + res_inc
        dense = torch.cat([x[:, d:, :, :], dense_new], dim=1)
        return F.relu(torch.cat([residual, dense], dim=1))


class DPN(nn.Module):
    def __init__(self, inner: tuple[int, ...] = (8, 16, 32, 64), res: tuple[int, ...] = (16, 32, 64, 128),
                 dense: tuple[int, ...] = (4, 8, 8, 16), blocks: tuple[int, ...] = (2, 2, 2, 2), groups: int = 4,
                 stem: int = 16, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU(inplace=True))
        layers, ch = [], stem
        for stage, (w, d, k, n) in enumerate(zip(inner, res, dense, blocks)):
            for i in range(n):
                layers.append(DualPathBlock(ch, w, d, k, groups, 2 if stage > 0 and i == 0 else 1, i == 0))
                ch = d + (i + 3) * k  # the projection starts the dense path at 2k
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.avg_pool2d(self.layers(self.stem(x)), 4)
        return self.fc(out.view(out.size(0), -1))


def dpn(blocks: tuple[int, ...] = (2, 2, 2, 2), groups: int = 4, num_classes: int = 10) -> DPN:
    return DPN(blocks=blocks, groups=groups, num_classes=num_classes)
