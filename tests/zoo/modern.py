"""A second, opt-in zoo of small networks in post-2016 idioms, each written from its paper.

`tests.zoo.MODERN` maps a name to a no-argument factory (call `torch.manual_seed` first). Unlike
`tests.zoo.ZOO`, not every output is (N, 10): the two U-Nets give (N, 4, 32, 32) segmentation
logits and ESPCN a (N, 3, 64, 64) image. The models exist to exercise what the classic zoo lacks:
parameters read directly in forward, norms other than BatchNorm with running statistics,
upsampling, padding modes, reductions and activations beyond ReLU. Every model has fewer than
300,000 parameters and takes (N, 3, 32, 32).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# ConvNeXt
# ---------------------------------------------------------------------------------------------


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW map, written out by hand with its own weight and bias."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class DropPath(nn.Module):
    """Stochastic depth: in training, zero whole samples of a residual branch with probability p."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device)
        mask = (mask + keep).floor_()
        return x.div(keep) * mask


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, drop_path: float, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)  # NCHW -> NHWC: LayerNorm and Linear act on the last axis
        x = self.norm(x)
        x = self.pwconv2(self.act(self.pwconv1(x)))
        x = self.gamma * x
        x = x.permute(0, 3, 1, 2)
        return shortcut + self.drop_path(x)


class ConvNeXt(nn.Module):
    """ConvNeXt for CIFAR-10, scaled down.

    Paper: "A ConvNet for the 2020s", Z. Liu, H. Mao, C.-Y. Wu, C. Feichtenhofer, T. Darrell,
    S. Xie, CVPR 2022, arXiv:2201.03545.

    Kept: the "patchify" stem (a non-overlapping strided conv followed by a channels-first
    LayerNorm), the inverted-bottleneck block (depthwise 7x7 conv, LayerNorm, Linear to 4x width,
    GELU, Linear back, learnable per-channel layer scale, stochastic depth rising linearly with
    depth, identity residual), separate downsampling layers (LayerNorm then a 2x2 stride-2 conv),
    global average pooling, a final LayerNorm and a linear head.
    CIFAR changes: a 2x2 stride-2 stem instead of 4x4 stride 4; three stages instead of four.
    Scaled down: widths (24, 48, 96) and depths (2, 2, 2) instead of (96, 192, 384, 768) and
    (3, 3, 9, 3); layer scale starts at 0.1 instead of 1e-6 so the branch is visible in a parity
    check.

    Idioms: a hand-written channels-first LayerNorm whose weight and bias are read in forward
    (`mean`, `pow`, `torch.sqrt`, `[:, None, None]` indexing); `permute` to NHWC and back around
    `nn.LayerNorm` and `nn.Linear` on 4-D tensors; `nn.GELU`; a layer-scale `nn.Parameter`
    multiplied in forward; drop path with `torch.rand` of shape (N, 1, 1, 1) and `floor_` under
    `self.training`; depthwise 7x7 conv; `x.mean([-2, -1])` pooling.
    """

    def __init__(self, dims: tuple[int, ...] = (24, 48, 96), depths: tuple[int, ...] = (2, 2, 2),
                 drop_path: float = 0.1, layer_scale: float = 0.1, num_classes: int = 10):
        super().__init__()
        self.downsample = nn.ModuleList([nn.Sequential(nn.Conv2d(3, dims[0], 2, stride=2), LayerNorm2d(dims[0]))])
        for i in range(1, len(dims)):
            self.downsample.append(nn.Sequential(LayerNorm2d(dims[i - 1]),
                                                 nn.Conv2d(dims[i - 1], dims[i], 2, stride=2)))
        total, k = sum(depths), 0
        self.stages = nn.ModuleList()
        for dim, depth in zip(dims, depths):
            blocks = []
            for _ in range(depth):
                blocks.append(ConvNeXtBlock(dim, drop_path * k / max(1, total - 1), layer_scale))
                k += 1
            self.stages.append(nn.Sequential(*blocks))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down, stage in zip(self.downsample, self.stages):
            x = stage(down(x))
        return self.head(self.norm(x.mean([-2, -1])))


def convnext(**kwargs) -> ConvNeXt:
    return ConvNeXt(**kwargs)


# ---------------------------------------------------------------------------------------------
# BiT ResNet
# ---------------------------------------------------------------------------------------------


class StdConv2d(nn.Conv2d):
    """Conv2d with weight standardisation: each output filter has zero mean and unit variance."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        m = w.mean(dim=(1, 2, 3), keepdim=True)
        v = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (w - m) / torch.sqrt(v + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class PreActBottleneck(nn.Module):
    def __init__(self, in_ch: int, mid: int, out_ch: int, stride: int, groups: int):
        super().__init__()
        self.gn1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = StdConv2d(in_ch, mid, 1, bias=False)
        self.gn2 = nn.GroupNorm(groups, mid)
        self.conv2 = StdConv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.gn3 = nn.GroupNorm(groups, mid)
        self.conv3 = StdConv2d(mid, out_ch, 1, bias=False)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = StdConv2d(in_ch, out_ch, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.gn1(x))
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.gn2(out)))
        out = self.conv3(F.relu(self.gn3(out)))
        return out + shortcut


class BiTResNet(nn.Module):
    """BiT-style ResNet v2 for CIFAR-10, scaled down.

    Paper: "Big Transfer (BiT): General Visual Representation Learning", A. Kolesnikov, L. Beyer,
    X. Zhai, J. Puigcerver, J. Yung, S. Gelly, N. Houlsby, ECCV 2020, arXiv:1912.11370; the
    pre-activation unit from "Identity Mappings in Deep Residual Networks", K. He et al., 2016.

    Kept: every BatchNorm replaced by GroupNorm and every conv by a weight-standardised conv;
    pre-activation bottleneck units (GN, ReLU, 1x1 conv; GN, ReLU, 3x3 conv carrying the stride;
    GN, ReLU, 1x1 conv to 4x width) whose projection shortcut reads the pre-activated input; a
    final GN + ReLU, global average pooling and a 1x1 conv head with bias.
    CIFAR changes: a 3x3 stride-1 stem without max-pool; three stages instead of four.
    Scaled down: bottleneck widths (16, 32, 64) with (2, 2, 1) units instead of (64, 128, 256, 512)
    with (3, 4, 6, 3); 8 groups instead of 32.

    Idioms: a `nn.Conv2d` subclass whose forward standardises `self.weight` (`mean`, `var`,
    `torch.sqrt`) and calls `F.conv2d` with its own stride, padding, dilation and groups;
    `nn.GroupNorm`; a 1x1 conv classifier flattened with `torch.flatten(x, 1)`.
    """

    def __init__(self, stem: int = 16, mids: tuple[int, ...] = (16, 32, 64), units: tuple[int, ...] = (2, 2, 1),
                 groups: int = 8, num_classes: int = 10):
        super().__init__()
        self.stem = StdConv2d(3, stem, 3, padding=1, bias=False)
        blocks, ch = [], stem
        for i, (mid, n) in enumerate(zip(mids, units)):
            for j in range(n):
                blocks.append(PreActBottleneck(ch, mid, 4 * mid, 2 if i > 0 and j == 0 else 1, groups))
                ch = 4 * mid
        self.body = nn.Sequential(*blocks)
        self.head_norm = nn.GroupNorm(groups, ch)
        self.head = nn.Conv2d(ch, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.stem(x))
        x = F.relu(self.head_norm(x))
        x = self.head(F.adaptive_avg_pool2d(x, 1))
        return torch.flatten(x, 1)


def bit_resnet(**kwargs) -> BiTResNet:
    return BiTResNet(**kwargs)


# ---------------------------------------------------------------------------------------------
# U-Nets
# ---------------------------------------------------------------------------------------------


class DoubleConv(nn.Sequential):
    """(3x3 conv, BatchNorm, ReLU) twice; the first conv may pad by reflection or replication."""

    def __init__(self, in_ch: int, out_ch: int, pad: str = "zeros"):
        if pad == "reflect":
            first = [nn.ReflectionPad2d(1), nn.Conv2d(in_ch, out_ch, 3, padding=0, bias=False)]
        else:
            first = [nn.Conv2d(in_ch, out_ch, 3, padding=1, padding_mode=pad, bias=False)]
        super().__init__(*first, nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
                         nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                         nn.ReLU(inplace=True))


class UNetTransposed(nn.Module):
    """A two-level U-Net with transposed-conv upsampling, for 4-class segmentation of 32x32 images.

    Paper: "U-Net: Convolutional Networks for Biomedical Image Segmentation", O. Ronneberger,
    P. Fischer, T. Brox, MICCAI 2015, arXiv:1505.04597.

    Kept: a contracting path of double 3x3 convs and 2x2 max-pools that doubles the width per
    level, a bottleneck, an expanding path of 2x2 stride-2 "up-convolutions" halving the width,
    concatenation with the same-level encoder map, double 3x3 convs, and a 1x1 conv to class
    logits at full resolution.
    Changes: padded ("same") convs so no cropping is needed; BatchNorm after each conv.
    Scaled down: two levels with widths (16, 32) and a 64-wide bottleneck instead of four levels
    from 64 to 1024.

    Idioms: `nn.ConvTranspose2d(kernel_size=2, stride=2)`; `torch.cat` of skip and upsampled map
    on dim 1; `nn.MaxPool2d(2)`; a dense (N, 4, 32, 32) output.
    """

    def __init__(self, widths: tuple[int, int] = (16, 32), bottleneck: int = 64, num_classes: int = 4):
        super().__init__()
        w1, w2 = widths
        self.enc1 = DoubleConv(3, w1)
        self.enc2 = DoubleConv(w1, w2)
        self.pool = nn.MaxPool2d(2)
        self.mid = DoubleConv(w2, bottleneck)
        self.up2 = nn.ConvTranspose2d(bottleneck, w2, 2, stride=2)
        self.dec2 = DoubleConv(2 * w2, w2)
        self.up1 = nn.ConvTranspose2d(w2, w1, 2, stride=2)
        self.dec1 = DoubleConv(2 * w1, w1)
        self.out = nn.Conv2d(w1, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        m = self.mid(self.pool(e2))
        d2 = self.dec2(torch.cat([e2, self.up2(m)], dim=1))
        d1 = self.dec1(torch.cat([e1, self.up1(d2)], dim=1))
        return self.out(d1)


def unet_transposed(**kwargs) -> UNetTransposed:
    return UNetTransposed(**kwargs)


class UNetBilinear(nn.Module):
    """A three-level U-Net that upsamples by interpolation, for 4-class segmentation of 32x32 images.

    Paper: "U-Net: Convolutional Networks for Biomedical Image Segmentation", O. Ronneberger,
    P. Fischer, T. Brox, MICCAI 2015, arXiv:1505.04597; interpolation followed by a conv in place
    of the up-convolution, as in "Deconvolution and Checkerboard Artifacts", A. Odena,
    V. Dumoulin, C. Olah, Distill 2016.

    Kept: the U-Net's contracting path, skip concatenations and expanding path.
    Changes: each up-step is a fixed interpolation then a 1x1 conv halving the width: bilinear
    with `align_corners=True` at the deepest level, bilinear with `align_corners=False` next,
    nearest-neighbour at full resolution; the first conv pads by reflection, the second level's
    first conv by replication; padded convs and BatchNorm.
    Scaled down: widths (8, 16, 32) and a 64-wide bottleneck.

    Idioms: `F.interpolate(scale_factor=2, mode="bilinear")` with `align_corners` True and False;
    `nn.Upsample(scale_factor=2, mode="nearest")`; `nn.ReflectionPad2d(1)` before an unpadded
    conv; `Conv2d(padding_mode="replicate")`; a dense (N, 4, 32, 32) output.
    """

    def __init__(self, widths: tuple[int, int, int] = (8, 16, 32), bottleneck: int = 64, num_classes: int = 4):
        super().__init__()
        w1, w2, w3 = widths
        self.enc1 = DoubleConv(3, w1, pad="reflect")
        self.enc2 = DoubleConv(w1, w2, pad="replicate")
        self.enc3 = DoubleConv(w2, w3)
        self.mid = DoubleConv(w3, bottleneck)
        self.reduce3 = nn.Conv2d(bottleneck, w3, 1)
        self.dec3 = DoubleConv(2 * w3, w3)
        self.reduce2 = nn.Conv2d(w3, w2, 1)
        self.dec2 = DoubleConv(2 * w2, w2)
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.reduce1 = nn.Conv2d(w2, w1, 1)
        self.dec1 = DoubleConv(2 * w1, w1)
        self.out = nn.Conv2d(w1, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        m = self.mid(F.max_pool2d(e3, 2))
        u3 = self.reduce3(F.interpolate(m, scale_factor=2, mode="bilinear", align_corners=True))
        d3 = self.dec3(torch.cat([e3, u3], dim=1))
        u2 = self.reduce2(F.interpolate(d3, scale_factor=2, mode="bilinear", align_corners=False))
        d2 = self.dec2(torch.cat([e2, u2], dim=1))
        d1 = self.dec1(torch.cat([e1, self.reduce1(self.up1(d2))], dim=1))
        return self.out(d1)


def unet_bilinear(**kwargs) -> UNetBilinear:
    return UNetBilinear(**kwargs)


# ---------------------------------------------------------------------------------------------
# ESPCN
# ---------------------------------------------------------------------------------------------


class ESPCN(nn.Module):
    """ESPCN: 2x super-resolution by a sub-pixel convolution, (N, 3, 32, 32) -> (N, 3, 64, 64).

    Paper: "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
    Convolutional Neural Network", W. Shi, J. Caballero, F. Huszar, J. Totz, A. P. Aitken,
    R. Bishop, D. Rueckert, Z. Wang, CVPR 2016, arXiv:1609.05158.

    Kept: the paper's network at its published size, (f1, n1) = (5, 64), (f2, n2) = (3, 32),
    f3 = 3: all convs in low resolution, the last producing 3 * r^2 channels that the periodic
    shuffle (`nn.PixelShuffle(r)`) rearranges into an r-times larger image.
    Changes: three colour channels in and out (the paper super-resolves luminance); the second
    activation is a per-channel `nn.PReLU(32)` (as in FSRCNN, Dong et al. 2016) instead of tanh.

    Idioms: `torch.tanh`; `nn.PReLU(num_parameters=C)`; `nn.PixelShuffle(2)`; 5x5 convs; an output
    larger than the input.
    """

    def __init__(self, upscale: int = 2, channels: int = 3, n1: int = 64, n2: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, n1, 5, padding=2)
        self.conv2 = nn.Conv2d(n1, n2, 3, padding=1)
        self.act2 = nn.PReLU(num_parameters=n2)
        self.conv3 = nn.Conv2d(n2, channels * upscale ** 2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.conv1(x))
        x = self.act2(self.conv2(x))
        return self.shuffle(self.conv3(x))


def espcn(**kwargs) -> ESPCN:
    return ESPCN(**kwargs)


# ---------------------------------------------------------------------------------------------
# CBAM ResNet
# ---------------------------------------------------------------------------------------------


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.cat([x.mean(1, keepdim=True), torch.max(x, dim=1, keepdim=True)[0]], 1)
        return x * torch.sigmoid(self.conv(s))


class CBAMBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, reduction: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.channel = ChannelAttention(out_ch, reduction)
        self.spatial = SpatialAttention()
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.spatial(self.channel(out))
        return F.relu(out + self.shortcut(x))


class CBAMResNet(nn.Module):
    """A small CIFAR ResNet with CBAM attention in every basic block.

    Paper: "CBAM: Convolutional Block Attention Module", S. Woo, J. Park, J.-Y. Lee, I. S. Kweon,
    ECCV 2018, arXiv:1807.06521.

    Kept: channel attention then spatial attention, in sequence, on each residual branch before
    the identity is added. Channel attention passes both the average-pooled and the max-pooled
    descriptor through one shared MLP (C -> C/r -> C), sums and applies a sigmoid; spatial
    attention concatenates the channel-wise mean and max maps and applies a 7x7 conv and a sigmoid.
    CIFAR changes: the three-stage CIFAR ResNet layout (He et al. 2016) with a 3x3 stem.
    Scaled down: widths (16, 32, 64), two basic blocks per stage, r = 4 instead of 16.

    Idioms: `F.adaptive_max_pool2d(x, 1)`; a module called twice (the shared MLP);
    `torch.max(x, dim=1, keepdim=True)[0]`; `x.mean(1, keepdim=True)`; a 2-channel 7x7 conv;
    `torch.sigmoid` gating; an empty `nn.Sequential()` as identity shortcut.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), blocks: int = 2, reduction: int = 4,
                 num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        layers, ch = [], widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks):
                layers.append(CBAMBlock(ch, w, 2 if i > 0 and j == 0 else 1, reduction))
                ch = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def cbam_resnet(**kwargs) -> CBAMResNet:
    return CBAMResNet(**kwargs)


# ---------------------------------------------------------------------------------------------
# Ghost / MixConv mix
# ---------------------------------------------------------------------------------------------


class GhostModule(nn.Module):
    """Half the outputs from a 1x1 conv, the other half by a cheap depthwise 3x3 on that half."""

    def __init__(self, in_ch: int, out_ch: int, act: bool):
        super().__init__()
        primary = out_ch // 2
        self.primary = nn.Sequential(nn.Conv2d(in_ch, primary, 1, bias=False),
                                     nn.BatchNorm2d(primary, track_running_stats=False),
                                     nn.Mish() if act else nn.Identity())
        self.cheap_conv = nn.Conv2d(primary, out_ch - primary, 3, padding=0, groups=primary, bias=False)
        self.cheap_norm = nn.BatchNorm2d(out_ch - primary, track_running_stats=False)
        self.cheap_act = nn.Mish() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        z = self.cheap_conv(F.pad(y, (1, 1, 1, 1), mode="reflect"))
        z = self.cheap_act(self.cheap_norm(z))
        return torch.cat([y, z], dim=1)


class MixConv(nn.Module):
    """Depthwise conv with channel groups of kernel 3, 5 and 7 (the 5x5 padded by nn.ZeroPad2d)."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.splits = [channels - 2 * (channels // 3), channels // 3, channels // 3]
        k3, k5, k7 = self.splits
        self.dw3 = nn.Conv2d(k3, k3, 3, stride=stride, padding=1, groups=k3, bias=False)
        self.dw5 = nn.Sequential(nn.ZeroPad2d(2), nn.Conv2d(k5, k5, 5, stride=stride, padding=0, groups=k5, bias=False))
        self.dw7 = nn.Conv2d(k7, k7, 7, stride=stride, padding=3, groups=k7, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, c = torch.split(x, self.splits, dim=1)
        return torch.cat([self.dw3(a), self.dw5(b), self.dw7(c)], dim=1)


class GhostMixBlock(nn.Module):
    """Ghost bottleneck: ghost expand, MixConv depthwise (stride), GroupNorm, Softplus, ghost project."""

    def __init__(self, in_ch: int, hidden: int, out_ch: int, stride: int, groups: int):
        super().__init__()
        self.expand = GhostModule(in_ch, hidden, act=True)
        self.mix = MixConv(hidden, stride)
        self.norm = nn.GroupNorm(groups, hidden)
        self.act = nn.Softplus()
        self.project = GhostModule(hidden, out_ch, act=False)
        self.shortcut = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
                                          nn.GroupNorm(groups, out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.act(self.norm(self.mix(self.expand(x)))))
        return out + (x if self.shortcut is None else self.shortcut(x))


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit root-mean-square (Karras et al. 2018)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class GhostMixNet(nn.Module):
    """A GhostNet / MixConv hybrid for CIFAR-10 that gathers idioms the other models lack.

    Papers: "GhostNet: More Features from Cheap Operations", K. Han, Y. Wang, Q. Tian, J. Guo,
    C. Xu, C. Xu, CVPR 2020, arXiv:1911.11907; "MixConv: Mixed Depthwise Convolutional Kernels",
    M. Tan, Q. V. Le, BMVC 2019, arXiv:1907.09595.

    Kept: the ghost module (a 1x1 conv makes half the channels, a cheap depthwise 3x3 on those
    makes the other half, concatenated); the ghost bottleneck (ghost expand with activation,
    depthwise conv carrying the stride, ghost project without activation, residual with a conv
    shortcut where the shape changes); MixConv's depthwise conv splitting channels into groups of
    kernel 3, 5 and 7.
    Changes, to exercise more idioms: a space-to-depth stem (`nn.PixelUnshuffle(2)`) and a 3x3
    conv with circular padding, InstanceNorm and ELU; a learned positional bias of shape
    (1, C, H, W) added to the stem output; BatchNorm without running statistics and Mish in the
    ghost modules; GroupNorm and Softplus after the MixConv; a pixel norm (`torch.sqrt`); a head
    that concatenates the spatial mean and standard deviation (`Tensor.std`).
    Scaled down: stem width 24, three blocks (24 -> 32 -> 48), expansion 2.

    Idioms: `nn.PixelUnshuffle`; `Conv2d(padding_mode="circular")`; `nn.InstanceNorm2d(affine=True)`;
    `nn.ELU`; an additive `nn.Parameter` of shape (1, C, H, W); `BatchNorm2d(track_running_stats=False)`;
    `nn.Mish`; `F.pad(x, (1, 1, 1, 1), mode="reflect")`; `nn.ZeroPad2d`; `torch.split` with unequal
    sizes; `nn.GroupNorm`; `nn.Softplus`; `torch.sqrt`; `Tensor.std`.
    """

    def __init__(self, stem: int = 24, widths: tuple[int, ...] = (24, 32, 48), strides: tuple[int, ...] = (1, 2, 2),
                 expansion: int = 2, groups: int = 4, num_classes: int = 10):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(2)
        self.stem = nn.Sequential(nn.Conv2d(12, stem, 3, padding=1, padding_mode="circular", bias=False),
                                  nn.InstanceNorm2d(stem, affine=True), nn.ELU())
        self.pos = nn.Parameter(0.02 * torch.randn(1, stem, 16, 16))
        blocks, ch = [], stem
        for w, s in zip(widths, strides):
            blocks.append(GhostMixBlock(ch, expansion * ch, w, s, groups))
            ch = w
        self.blocks = nn.Sequential(*blocks)
        self.pixel_norm = PixelNorm()
        self.fc = nn.Linear(2 * ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.unshuffle(x)) + self.pos
        x = self.pixel_norm(self.blocks(x))
        stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
        return self.fc(stats)


def ghost_mix(**kwargs) -> GhostMixNet:
    return GhostMixNet(**kwargs)


class NonLocal2d(nn.Module):
    """The embedded-Gaussian non-local block (Wang, Girshick, Gupta, He 2018, "Non-local Neural
    Networks", arXiv:1711.07971, eq. 1-3 and Fig. 2): theta/phi/g 1x1 convs to C/2, attention
    softmax(theta^T phi) over all positions (phi and g max-pooled 2x2, the paper's subsampling),
    y = f g, then a 1x1 conv W back to C with BatchNorm initialised to zero, added to the input.
    Idioms: view/permute/matmul/softmax on flattened positions, a zero-initialised BN scale."""

    def __init__(self, channels: int):
        super().__init__()
        self.inner = channels // 2
        self.theta = nn.Conv2d(channels, self.inner, 1)
        self.phi = nn.Sequential(nn.Conv2d(channels, self.inner, 1), nn.MaxPool2d(2))
        self.g = nn.Sequential(nn.Conv2d(channels, self.inner, 1), nn.MaxPool2d(2))
        self.w = nn.Conv2d(self.inner, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn.weight)

    def forward(self, x):
        n, _, h, w = x.shape
        theta = self.theta(x).view(n, self.inner, -1).permute(0, 2, 1)  # (N, HW, C/2)
        phi = self.phi(x).view(n, self.inner, -1)                      # (N, C/2, HW/4)
        g = self.g(x).view(n, self.inner, -1).permute(0, 2, 1)          # (N, HW/4, C/2)
        f = torch.softmax(torch.matmul(theta, phi), dim=-1)            # (N, HW, HW/4)
        y = torch.matmul(f, g).permute(0, 2, 1).reshape(n, self.inner, h, w)
        return x + self.bn(self.w(y))


class NonLocalNet(nn.Module):
    """A small CIFAR ResNet-style net with one non-local block at 16x16 (the paper adds them to
    res3/res4 of a ResNet; here conv stages of 16/32/64 channels, the block after stage 2)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()

        def unit(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True))

        self.stage1 = unit(3, 16, 1)
        self.stage2 = unit(16, 32, 2)
        self.nonlocal_block = NonLocal2d(32)
        self.stage3 = unit(32, 64, 2)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.nonlocal_block(self.stage2(self.stage1(x)))
        x = self.stage3(x)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def nonlocal_net(**kwargs) -> NonLocalNet:
    return NonLocalNet(**kwargs)
