"""A zoo of small CIFAR-10 PyTorch networks, one per published family, for testing the porter.

`ZOO` maps a name to a no-argument factory; call `torch.manual_seed` first for fixed weights.
Each family lives in its own file with its paper and its scaling-down in the docstring; every
factory takes keyword arguments to build wider versions (`resnet18(width=64)` is the standard
11,173,962-parameter CIFAR ResNet-18).

`MODERN` is a second, opt-in zoo (tests/zoo/modern.py) of post-2016 idioms written from their
papers: ConvNeXt, BiT, two U-Nets, ESPCN, CBAM and a GhostNet/MixConv mix. It is kept apart so
`ZOO` stays the 18 classic families: not all of its outputs are (N, 10) (the U-Nets give
(N, 4, 32, 32) segmentation logits, ESPCN a (N, 3, 64, 64) image; see `MODERN_OUTPUT`).
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
from tests.zoo.modern import (bit_resnet, cbam_resnet, convnext, espcn, ghost_mix, nonlocal_net, unet_bilinear,
                              unet_transposed)
from tests.zoo.nin import nin
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
    "nin": nin,  # class maps averaged, no nn.Linear; padded 3x3 stride-2 max and average pools
}

# Opt-in: not part of ZOO, so the porter's zoo tests and the inventory's default are unchanged.
MODERN: dict[str, Callable[[], nn.Module]] = {
    "convnext": convnext,  # layer scale and hand-written LayerNorm parameters read in forward, drop path
    "bit_resnet": bit_resnet,  # GroupNorm, weight-standardised Conv2d subclass calling F.conv2d
    "unet_transposed": unet_transposed,  # ConvTranspose2d, skip concatenation, dense output
    "unet_bilinear": unet_bilinear,  # bilinear (align_corners both ways) and nearest upsampling, reflect/replicate pad
    "espcn": espcn,  # PixelShuffle, tanh, PReLU(C), output larger than the input
    "cbam_resnet": cbam_resnet,  # adaptive max pool, torch.max over channels, 7x7 spatial gate
    "ghost_mix": ghost_mix,  # InstanceNorm, BN without running stats, ELU/Mish/Softplus, pads, std, PixelUnshuffle
    "nonlocal_net": nonlocal_net,  # self-attention over positions: view/permute/matmul/softmax, zero-init BN
}

# Output shape of each MODERN model for an (N, 3, 32, 32) input, without the batch axis.
MODERN_OUTPUT: dict[str, tuple[int, ...]] = {
    "convnext": (10,),
    "bit_resnet": (10,),
    "unet_transposed": (4, 32, 32),
    "unet_bilinear": (4, 32, 32),
    "espcn": (3, 64, 64),
    "cbam_resnet": (10,),
    "ghost_mix": (10,),
    "nonlocal_net": (10,),
}
