"""The full-size published nets the porter's timing goal names (issue 32), from the zoo's own builders:
`python -m parity port --module tests.zoo.full_size:dpn26 --input-shape 2,3,32,32 --out /tmp/x --check --float64`."""

from __future__ import annotations

from tests.zoo.dpn import DPN
from tests.zoo.regnet import regnet_y
from tests.zoo.resnet import resnet18
from tests.zoo.resnext import resnext29


def resnet18_w64():
    """ResNet-18 (BasicBlock, CIFAR stem) at the paper's width: 11.17 M parameters."""
    return resnet18(width=64)


def regnety_400mf():
    """RegNetY-400MF's stage widths, depths and group width: 3.90 M parameters."""
    return regnet_y(widths=(48, 104, 208, 440), depths=(1, 3, 6, 6), group_width=8)


def resnext29_2x64d():
    """ResNeXt29 (2x64d): 5.14 M parameters."""
    return resnext29(cardinality=2, group_width=64)


def dpn26():
    """DPN-26: 11.99 M parameters."""
    return DPN(inner=(96, 192, 384, 768), res=(256, 512, 1024, 2048), dense=(16, 32, 24, 128),
               blocks=(2, 2, 2, 2), groups=32, stem=64)
