"""CenterNet ("Objects as Points", Zhou, Wang and Krähenbühl 2019), scaled down for 32x32 inputs.

Written from the paper's description: a ResNet backbone augmented with up-convolutions to a higher
resolution output, each up-convolution preceded by a 3x3 conv (the paper's is deformable; a plain one
here) and initialised as bilinear interpolation; then one head per output — 3x3 conv, ReLU, 1x1 conv —
for the class heatmap (bias -2.19, the focal loss prior of 0.1), the object size (2 channels) and the
centre offset (2 channels). The forward returns {"hm", "wh", "reg"}, each (N, C, 16, 16): output stride
2 here (the paper's 4 at 512x512). The up-convolutions are depthwise (groups = channels, as DLA's IDA-up
builds them), so the port meets a grouped transposed conv.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


def bilinear_(weight: torch.Tensor) -> None:
    """Fill a transposed-conv kernel (in, 1, k, k) with bilinear interpolation weights."""
    k = weight.shape[-1]
    f = math.ceil(k / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    r = torch.arange(k, dtype=weight.dtype)
    w1 = 1 - torch.abs(r / f - c)
    with torch.no_grad():
        weight.copy_((w1[:, None] * w1[None, :]).expand_as(weight))


class Up(nn.Module):
    """3x3 conv -> BN -> ReLU -> 2x depthwise up-convolution (bilinear init) -> BN -> ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.up = nn.ConvTranspose2d(cout, cout, 4, stride=2, padding=1, groups=cout, bias=False)
        bilinear_(self.up.weight)
        self.bn_up = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return torch.relu(self.bn_up(self.up(x)))


def head(cin: int, mid: int, cout: int, bias: float = 0.0) -> nn.Sequential:
    out = nn.Conv2d(mid, cout, 1)
    nn.init.constant_(out.bias, bias)
    return nn.Sequential(nn.Conv2d(cin, mid, 3, padding=1), nn.ReLU(inplace=True), out)


class CenterNet(nn.Module):
    def __init__(self, num_classes: int = 3, widths=(16, 32, 64, 96), up=(64, 32), head_width: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            layers.append(BasicBlock(cin, w, 1 if i == 0 else 2))
            cin = w
        self.backbone = nn.Sequential(*layers)  # 32 -> 4
        ups = []
        for w in up:
            ups.append(Up(cin, w))
            cin = w
        self.ups = nn.Sequential(*ups)           # 4 -> 16
        self.hm = head(cin, head_width, num_classes, bias=-2.19)
        self.wh = head(cin, head_width, 2)
        self.reg = head(cin, head_width, 2)

    def forward(self, x):
        f = self.ups(self.backbone(self.stem(x)))
        return {"hm": self.hm(f), "wh": self.wh(f), "reg": self.reg(f)}


def centernet(**kwargs) -> CenterNet:
    return CenterNet(**kwargs)
