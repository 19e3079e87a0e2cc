"""VGG-11 with batch normalisation for CIFAR-10: 3x3 convs, five 2x2 max-pools, flatten + linear head.

Paper: "Very Deep Convolutional Networks for Large-Scale Image Recognition", K. Simonyan,
A. Zisserman, 2014, arXiv:1409.1556 (configuration A); BN after each conv as in "Batch
Normalization", S. Ioffe, C. Szegedy, 2015, arXiv:1502.03167.

Kept: configuration A's eight 3x3 convs (with bias, as in the paper) in five groups, each group
closed by a 2x2 stride-2 max-pool, ReLU after every BN, dropout before the classifier.
CIFAR changes: five halvings take 32x32 to 1x1, so the classifier is one linear layer on the
flattened 1x1 map instead of the three 4096-wide fully connected layers.
Scaled down: widths are `width` x (1, 2, 4, 4, 8, 8, 8, 8) with `width` 4 (the paper's is 64).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Configuration A in units of `width`; "M" is a 2x2 max-pool.
LAYOUT = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")


def features(width: int) -> nn.Sequential:
    """The conv-BN-ReLU layers and pools of configuration A, one Sequential per pooled group."""
    groups, layers, in_ch = [], [], 3
    for item in LAYOUT:
        if item == "M":
            groups.append(nn.Sequential(*layers, nn.MaxPool2d(2, 2)))
            layers = []
        else:
            out_ch = item * width
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=True), nn.BatchNorm2d(out_ch),
                       nn.ReLU(inplace=True)]
            in_ch = out_ch
    return nn.Sequential(*groups)


class VGG11(nn.Module):
    def __init__(self, width: int = 4, num_classes: int = 10, dropout: float = 0.5):
        super().__init__()
        self.features = features(width)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(8 * width, num_classes)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.flatten(self.features(x))
        if self.training:
            out = F.dropout(out, self.dropout, training=True)
        return self.classifier(out)


def vgg11(width: int = 4, num_classes: int = 10) -> VGG11:
    return VGG11(width, num_classes)
