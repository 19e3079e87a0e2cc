"""EfficientNet-B0 for CIFAR-10: MBConv blocks with squeeze-excitation, Swish and drop-connect.

Paper: "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", M. Tan,
Q. V. Le, 2019, arXiv:1905.11946 (the MBConv block is MnasNet's, arXiv:1807.11626; stochastic
depth is "Deep Networks with Stochastic Depth", G. Huang et al., 2016, arXiv:1603.09382).

Kept: the B0 layout of Table 1 (stem conv, seven MBConv stages with their expansion ratios 1 or
6, kernel sizes 3 or 5 and strides, a 1x1 head conv, global average pooling, dropout, linear);
the MBConv block (1x1 expansion, kxk depthwise conv, squeeze-excitation on a quarter of the
block's input width, 1x1 linear projection, identity added when stride 1 and widths match);
Swish after every conv but the projection; drop-connect on the residual branch in training
only, with a rate growing linearly with the block index towards 0.2.
CIFAR changes: the stem and the second stage use stride 1, so 32x32 reaches 4x4.
Scaled down: widths x `width_mult` (default 0.2) and at most `max_repeats` (default 2) blocks
per stage instead of up to 4.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Table 1 rows (expansion, kernel, stride, channels, repeats), strides for CIFAR.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 1, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


def scaled(channels: int, width_mult: float) -> int:
    """A width times the multiplier, at least 4 channels."""
    return max(4, int(channels * width_mult))


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class SqueezeExcite(nn.Module):
    """Channel gates from the pooled map through two 1x1 convs (Swish between, sigmoid after)."""

    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1, bias=True)
        self.expand = nn.Conv2d(squeezed, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(F.adaptive_avg_pool2d(x, 1)))))


class MBConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, expansion: int, kernel: int, stride: int, drop_rate: float):
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(in_ch, hidden, 1, bias=False), nn.BatchNorm2d(hidden), Swish()]
        layers += [nn.Conv2d(hidden, hidden, kernel, stride=stride, padding=kernel // 2, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden), Swish(),
                   SqueezeExcite(hidden, max(1, in_ch // 4)),
                   nn.Conv2d(hidden, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if not self.residual:
            return out
        if self.training and self.drop_rate > 0:
            keep = 1.0 - self.drop_rate
            mask = torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) < keep
            out = out * mask / keep
        return out + x


class EfficientNetB0(nn.Module):
    def __init__(self, width_mult: float = 0.2, max_repeats: int = 2, num_classes: int = 10,
                 dropout: float = 0.2, drop_connect: float = 0.2):
        super().__init__()
        plan = [(t, k, s if i == 0 else 1, scaled(c, width_mult))
                for t, k, s, c, n in STAGES for i in range(min(n, max_repeats))]
        ch = scaled(32, width_mult)
        blocks: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch),
                                                 nn.SiLU())]
        for i, (t, k, s, c) in enumerate(plan):
            blocks.append(MBConv(ch, c, t, k, s, drop_connect * i / len(plan)))
            ch = c
        last = scaled(1280, width_mult)
        blocks.append(nn.Sequential(nn.Conv2d(ch, last, 1, bias=False), nn.BatchNorm2d(last), nn.SiLU()))
        self.features = nn.Sequential(*blocks)
        self.fc = nn.Linear(last, num_classes)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        if self.training:
            out = F.dropout(out, self.dropout, training=True)
        return self.fc(out)


def efficientnet_b0(width_mult: float = 0.2, max_repeats: int = 2, num_classes: int = 10) -> EfficientNetB0:
    return EfficientNetB0(width_mult, max_repeats, num_classes)
