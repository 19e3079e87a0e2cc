"""MobileNet v2 for CIFAR-10: inverted residual blocks with linear bottlenecks and ReLU6.

Paper: "MobileNetV2: Inverted Residuals and Linear Bottlenecks", M. Sandler, A. Howard, M. Zhu,
A. Zhmoginov, L.-C. Chen, 2018, arXiv:1801.04381.

Kept: the block (1x1 expansion by t, 3x3 depthwise conv with the stride, 1x1 linear projection
with no activation after it; ReLU6 after the first two; the input is added back when stride is 1
and widths match; t = 1 blocks skip the expansion), the seven bottleneck stages of Table 2 with
their expansions, widths and strides, a final 1x1 conv, global average pooling, dropout and a
linear classifier.
CIFAR changes: the stem conv and the first stride-2 stage (24 channels) use stride 1, so 32x32
reaches 4x4.
Scaled down: widths x `width_mult` (default 1/4, final conv 1280/4) and each stage repeats at
most `max_repeats` (default 2) blocks instead of up to 4.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Table 2 rows (expansion t, channels c, repeats n, stride s), strides for CIFAR.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))


def scaled(channels: int, width_mult: float) -> int:
    """A width times the multiplier, at least 4 channels."""
    return max(4, int(channels * width_mult))


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch)]


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, expansion: int, stride: int):
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [*conv_bn(in_ch, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [*conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True)]
        layers += conv_bn(hidden, out_ch, 1)  # the linear bottleneck: no activation
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    def __init__(self, width_mult: float = 0.25, max_repeats: int = 2, num_classes: int = 10,
                 dropout: float = 0.2):
        super().__init__()
        ch = scaled(32, width_mult)
        blocks: list[nn.Module] = [nn.Sequential(*conv_bn(3, ch, 3), nn.ReLU6(inplace=True))]
        for t, c, n, s in STAGES:
            for i in range(min(n, max_repeats)):
                blocks.append(InvertedResidual(ch, scaled(c, width_mult), t, s if i == 0 else 1))
                ch = scaled(c, width_mult)
        last = scaled(1280, width_mult)
        blocks.append(nn.Sequential(*conv_bn(ch, last, 1), nn.ReLU6(inplace=True)))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Linear(last, num_classes)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.adaptive_avg_pool2d(self.features(x), 1)
        out = torch.flatten(out, 1)
        if self.training:
            out = F.dropout(out, self.dropout, training=True)
        return self.classifier(out)


def mobilenet_v2(width_mult: float = 0.25, max_repeats: int = 2, num_classes: int = 10) -> MobileNetV2:
    return MobileNetV2(width_mult, max_repeats, num_classes)
