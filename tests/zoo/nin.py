"""Network in Network for CIFAR-10: mlpconv blocks, and class maps averaged instead of a classifier.

Paper: "Network In Network", M. Lin, Q. Chen, S. Yan, 2013, arXiv:1312.4400 (the CIFAR-10 net of
its section 4.2 and the authors' Caffe definition).

Kept: three mlpconv layers, each a k x k conv followed by two 1x1 convs ("a micro network shared
across positions"), ReLU after every conv; 5x5, 5x5 and 3x3 spatial kernels; a 3x3 stride-2 max-pool
after the first block and a 3x3 stride-2 average pool after the second, each followed by dropout 0.5;
the last 1x1 conv outputs one map per class and global average pooling turns the maps into logits,
with no fully connected layer. Added: BatchNorm after every conv, as in the usual re-implementations
(the paper trained without it).
CIFAR changes: none (the paper's net is a CIFAR-10 net); pools pad 1, which gives Caffe's ceil-mode
sizes 32 -> 16 -> 8.
Scaled down: block widths `width` x (1, 5/6, 1/2), (1, 1, 1), (1, 1) with `width` 48; the paper's is
192, i.e. (192, 160, 96), (192, 192, 192), (192, 192, 10).
"""

from __future__ import annotations

import torch
import torch.nn as nn


def mlpconv(in_ch: int, widths: tuple[int, int, int], kernel: int) -> nn.Sequential:
    """A k x k conv and two 1x1 convs, each followed by BN and ReLU (the Caffe net keeps the ReLU
    after the class maps too)."""
    layers: list[nn.Module] = []
    for out_ch, k in zip(widths, (kernel, 1, 1)):
        layers += [nn.Conv2d(in_ch, out_ch, k, padding=k // 2), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
        in_ch = out_ch
    return nn.Sequential(*layers)


class NiN(nn.Module):
    def __init__(self, width: int = 48, num_classes: int = 10):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            mlpconv(3, (w, w * 5 // 6, w // 2), 5), nn.MaxPool2d(3, 2, padding=1), nn.Dropout(0.5),
            mlpconv(w // 2, (w, w, w), 5), nn.AvgPool2d(3, 2, padding=1), nn.Dropout(0.5),
            mlpconv(w, (w, w, num_classes), 3))
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


def nin(width: int = 48) -> NiN:
    return NiN(width)
