"""The two classifiers of the whole-run comparison (issue 33), as factories `--torch-model` can load.

ResNet-18 (BasicBlock, CIFAR stem: 3x3 stride-1 conv, no max-pool) at width 16 — 701,466
parameters, 35.0 M MACs per image — and MobileNetV2 (CIFAR strides, every Table 2 repeat) at width
multiplier 0.5 — 587,178 parameters, 23.7 M MACs.
"""

from __future__ import annotations

from tests.zoo.mobilenet_v2 import MobileNetV2, mobilenet_v2
from tests.zoo.resnet import ResNet18, resnet18


def resnet18_w16() -> ResNet18:
    return resnet18(width=16)


def mobilenet_v2_half() -> MobileNetV2:
    return mobilenet_v2(width_mult=0.5, max_repeats=4)
