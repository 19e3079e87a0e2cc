"""MobileNet v3-Small for CIFAR-10: inverted residuals with hard-swish and hard-sigmoid SE gates.

Paper: "Searching for MobileNetV3", A. Howard, M. Sandler, G. Chu, L.-C. Chen, B. Chen, M. Tan,
W. Wang, Y. Zhu, R. Pang, V. Vasudevan, Q. V. Le, H. Adam, 2019, arXiv:1905.02244.

Kept: the Small network of Table 2: stem conv with h-swish, eleven bneck blocks with their
kernel sizes, expansion and output widths, SE flags, nonlinearities (ReLU or h-swish) and
strides; the bneck block (1x1 expansion unless the expansion width equals the input, kxk
depthwise conv, optional squeeze-excitation to a quarter of the expansion width with ReLU and
hard-sigmoid, 1x1 linear projection, identity added when stride 1 and widths match); the
efficient last stage (1x1 conv, global pooling, then a BN-free 1x1 layer with h-swish, here a
linear layer with bias on the pooled vector, dropout, the classifier).
CIFAR changes: the stem and the first bneck use stride 1, so 32x32 reaches 4x4.
Scaled down: every width x `width_mult` (default 1/4), e.g. 576 -> 144, 1024 -> 256.
"""

from __future__ import annotations

import torch
import torch.nn as nn

# Table 2 (Small): (kernel, expansion width, output width, SE, h-swish, stride), strides for CIFAR.
BNECKS = ((3, 16, 16, True, False, 1), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
          (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
          (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
          (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1))


def scaled(channels: int, width_mult: float) -> int:
    """A width times the multiplier, at least 4 channels."""
    return max(4, int(channels * width_mult))


def activation(hswish: bool) -> nn.Module:
    return nn.Hardswish() if hswish else nn.ReLU(inplace=True)


class HardSqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, max(1, channels // 4), 1, bias=True),
                                  nn.ReLU(inplace=True), nn.Conv2d(max(1, channels // 4), channels, 1, bias=True),
                                  nn.Hardsigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class Bneck(nn.Module):
    def __init__(self, in_ch: int, kernel: int, hidden: int, out_ch: int, se: bool, hswish: bool, stride: int):
        super().__init__()
        layers: list[nn.Module] = []
        if hidden != in_ch:
            layers += [nn.Conv2d(in_ch, hidden, 1, bias=False), nn.BatchNorm2d(hidden), activation(hswish)]
        layers += [nn.Conv2d(hidden, hidden, kernel, stride=stride, padding=kernel // 2, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden), activation(hswish)]
        if se:
            layers.append(HardSqueezeExcite(hidden))
        layers += [nn.Conv2d(hidden, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


class MobileNetV3Small(nn.Module):
    def __init__(self, width_mult: float = 0.25, num_classes: int = 10, dropout: float = 0.2):
        super().__init__()
        ch = scaled(16, width_mult)
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch),
                                                 nn.Hardswish())]
        for kernel, hidden, out_ch, se, hswish, stride in BNECKS:
            out_ch = scaled(out_ch, width_mult)
            layers.append(Bneck(ch, kernel, scaled(hidden, width_mult), out_ch, se, hswish, stride))
            ch = out_ch
        last, hidden = scaled(576, width_mult), scaled(1024, width_mult)
        layers.append(nn.Sequential(nn.Conv2d(ch, last, 1, bias=False), nn.BatchNorm2d(last), nn.Hardswish()))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(last, hidden), nn.Hardswish(), nn.Dropout(dropout),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


def mobilenet_v3_small(width_mult: float = 0.25, num_classes: int = 10) -> MobileNetV3Small:
    return MobileNetV3Small(width_mult, num_classes)
