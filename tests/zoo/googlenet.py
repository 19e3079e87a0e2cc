"""GoogLeNet for CIFAR-10: Inception modules of four concatenated branches.

Paper: "Going Deeper with Convolutions", C. Szegedy, W. Liu, Y. Jia, P. Sermanet, S. Reed,
D. Anguelov, D. Erhan, V. Vanhoucke, A. Rabinovich, 2014, arXiv:1409.4842.

Kept: the Inception module (1x1; 1x1 then 3x3; 1x1 then 5x5; 3x3 max-pool stride 1 padding 1
then 1x1 projection; the four outputs concatenated), the nine modules 3a ... 5b of Table 1 with
their branch-width ratios, the 3x3 stride-2 max-pools between the 3, 4 and 5 groups, global
average pooling, dropout 0.4 and a linear classifier.
CIFAR changes: the stem is one 3x3 conv without pooling (maps stay 32x32 until 4a), BN after
every conv (as in later Inception versions), no auxiliary classifiers.
Scaled down: every width x `width_mult` (default 1/16, at least 2 channels).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); "M" is a 3x3 stride-2 max-pool.
MODULES = ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "M",
           (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
           (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128), "M",
           (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128))


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class Inception(nn.Module):
    def __init__(self, in_ch: int, n1: int, r3: int, n3: int, r5: int, n5: int, pool_proj: int):
        super().__init__()
        self.branch1 = conv_bn_relu(in_ch, n1, 1)
        self.branch3 = nn.Sequential(conv_bn_relu(in_ch, r3, 1), conv_bn_relu(r3, n3, 3))
        self.branch5 = nn.Sequential(conv_bn_relu(in_ch, r5, 1), conv_bn_relu(r5, n5, 5))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv_bn_relu(in_ch, pool_proj, 1))
        self.out_ch = n1 + n3 + n5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], 1)


class GoogLeNet(nn.Module):
    def __init__(self, width_mult: float = 1 / 16, num_classes: int = 10, dropout: float = 0.4):
        super().__init__()
        ch = max(2, round(192 * width_mult))
        layers: list[nn.Module] = [conv_bn_relu(3, ch, 3)]
        for spec in MODULES:
            if spec == "M":
                layers.append(nn.MaxPool2d(3, stride=2, padding=1))
            else:
                module = Inception(ch, *(max(2, round(c * width_mult)) for c in spec))
                layers.append(module)
                ch = module.out_ch
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)
        out = F.avg_pool2d(out, out.shape[2])
        return self.fc(self.dropout(torch.flatten(out, 1)))


def googlenet(width_mult: float = 1 / 16, num_classes: int = 10) -> GoogLeNet:
    return GoogLeNet(width_mult, num_classes)
