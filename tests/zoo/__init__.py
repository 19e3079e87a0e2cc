"""A zoo of small CIFAR-10 PyTorch networks, one per published family, for testing the porter.

`ZOO` maps a name to a no-argument factory; call `torch.manual_seed` first for fixed weights.
Each family lives in its own file with its paper and its scaling-down in the docstring; every
factory takes keyword arguments to build wider versions (`resnet18(width=64)` is the standard
11,173,962-parameter CIFAR ResNet-18).
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from tests.zoo.densenet import densenet
from tests.zoo.dla import dla
from tests.zoo.dpn import dpn
from tests.zoo.efficientnet import efficientnet_b0
from tests.zoo.googlenet import googlenet
from tests.zoo.mobilenet_v1 import mobilenet_v1
from tests.zoo.mobilenet_v2 import mobilenet_v2
from tests.zoo.mobilenet_v3 import mobilenet_v3_small
from tests.zoo.pnasnet import pnasnet
from tests.zoo.regnet import regnet_y
from tests.zoo.res2net import res2net
from tests.zoo.resnet import resnet18
from tests.zoo.resnext import resnext29
from tests.zoo.senet import senet18
from tests.zoo.shufflenet_v1 import shufflenet_v1
from tests.zoo.shufflenet_v2 import shufflenet_v2
from tests.zoo.vgg import vgg11

ZOO: dict[str, Callable[[], nn.Module]] = {
    "resnet18": resnet18,
    "vgg11": vgg11,
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "densenet": densenet,
    "googlenet": googlenet,
    "senet18": senet18,
    "shufflenet_v2": shufflenet_v2,
    "efficientnet_b0": efficientnet_b0,
    "regnet_y": regnet_y,
    "resnext29": resnext29,
    "dpn": dpn,
    "pnasnet": pnasnet,
    "dla": dla,
    # Beyond the fourteen required families: each brings an idiom the others lack.
    "res2net": res2net,  # x.chunk(s, dim=1) into a hierarchy of 3x3 convs
    "shufflenet_v1": shufflenet_v1,  # permute/reshape shuffle, avg-pool shortcut counting padding
    "mobilenet_v3_small": mobilenet_v3_small,  # Hardswish, Hardsigmoid, nn.Dropout
}
