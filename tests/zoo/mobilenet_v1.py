"""MobileNet v1 for CIFAR-10: a stack of depthwise-separable convolutions.

Paper: "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
A. G. Howard, M. Zhu, B. Chen, D. Kalenichenko, W. Wang, T. Weyand, M. Andreetto, H. Adam, 2017,
arXiv:1704.04861.

Kept: the paper's body (Table 1): a full 3x3 conv, then 13 depthwise-separable layers (3x3
depthwise conv-BN-ReLU, 1x1 pointwise conv-BN-ReLU) with the same widths and strides, global
average pooling and one linear layer; the width multiplier alpha scales every layer.
CIFAR changes: the first conv has stride 1, so the four stride-2 layers take 32x32 to 2x2.
Scaled down: alpha (`width_mult`) defaults to 1/8, i.e. widths 4 ... 128 instead of 32 ... 1024.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# (output channels at alpha = 1, stride) of the 13 separable layers in Table 1.
LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def separable(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 (one filter per channel) then pointwise 1x1, each followed by BN and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, 3, stride=stride, padding=1, groups=in_ch, bias=False),
        nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True),
        nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class MobileNetV1(nn.Module):
    def __init__(self, width_mult: float = 0.125, num_classes: int = 10):
        super().__init__()
        ch = max(1, int(32 * width_mult))
        body = [nn.Conv2d(3, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
        for out_ch, stride in LAYERS:
            out_ch = max(1, int(out_ch * width_mult))
            body.append(separable(ch, out_ch, stride))
            ch = out_ch
        self.body = nn.Sequential(*body)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        out = F.avg_pool2d(out, out.size(3))
        return self.fc(out.view(out.size(0), -1))


def mobilenet_v1(width_mult: float = 0.125, num_classes: int = 10) -> MobileNetV1:
    return MobileNetV1(width_mult, num_classes)
