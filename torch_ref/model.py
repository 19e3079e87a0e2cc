"""The PyTorch twin, NCHW, built from the same `ModelConfig` as the Flax one.

State-dict keys are the project's interchange naming (`features.c1.0.conv.weight`, …).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from flax_cnn.model.config import ConvSpec, ModelConfig

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU, "gelu": nn.GELU}


class SeparableConv2d(nn.Module):
    """Depthwise k×k (groups = in channels; stride, dilation, padding) then pointwise 1×1."""

    def __init__(self, in_ch: int, out_ch: int, spec: ConvSpec):
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, spec.kernel_size, spec.stride, spec.pad,
                                   spec.dilation, groups=in_ch, bias=False)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class ConvBNAct(nn.Sequential):
    """conv → BatchNorm → activation → dropout; with `shortcut` its input is added to its output."""

    def __init__(self, in_ch: int, spec: ConvSpec, cfg: ModelConfig, *, shortcut: bool = False):
        conv = (SeparableConv2d(in_ch, spec.out_channels, spec) if spec.separable else
                nn.Conv2d(in_ch, spec.out_channels, spec.kernel_size, spec.stride, spec.pad,
                          spec.dilation, groups=spec.groups, bias=False))
        super().__init__(OrderedDict(
            conv=conv,
            bn=nn.BatchNorm2d(spec.out_channels, eps=cfg.bn_eps, momentum=cfg.bn_momentum),
            act=ACTIVATIONS[cfg.activation](),
            drop=(nn.Dropout2d if cfg.dropout_kind == "channel" else nn.Dropout)(cfg.dropout),
        ))
        self.shortcut = shortcut
        if shortcut and cfg.zero_init_residual:
            nn.init.zeros_(self.bn.weight)

    def forward(self, x):
        y = super().forward(x)
        return x + y if self.shortcut else y


class CNN(nn.Module):
    """`features` is the conv trunk (N, C, h, w); `forward_head` pools and classifies."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        blocks, in_ch = OrderedDict(), cfg.in_channels
        shortcuts = iter(cfg.shortcuts())
        for b in cfg.blocks:
            layers = []
            for spec in b.layers:
                layers.append(ConvBNAct(in_ch, spec, cfg, shortcut=next(shortcuts)))
                in_ch = spec.out_channels
            blocks[b.name] = nn.Sequential(*layers)
        self.features = nn.Sequential(blocks)
        self.fc = nn.Linear(in_ch, cfg.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_model(config: ModelConfig | None = None, *, seed: int | None = None) -> CNN:
    """Build the torch twin (train mode); `seed` makes the default init reproducible."""
    config = config or ModelConfig()
    if seed is None:
        return CNN(config)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return CNN(config)


def build_torch_model(spec: str, *, seed: int | None = None, num_classes: int = 10, input_size: int = 32,
                      in_channels: int = 3) -> nn.Module:
    """`--torch-model pkg.mod:factory`: the user's module (train mode), built with torch seeded by `seed`
    as `python -m parity port --seed` builds it (so both twins start from the same weights).

    ConfigError (one line) if the factory cannot be loaded or raises, returns no nn.Module, or the
    module's eval-mode output for a (2, C, H, W) batch is not (2, num_classes) logits."""
    from flax_cnn.model.config import ConfigError
    from flax_cnn.runtime.factory import first_line, load_factory

    try:
        factory = load_factory(spec, flag="--torch-model")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    shape = (2, in_channels, input_size, input_size)
    with torch.random.fork_rng():
        if seed is not None:
            torch.manual_seed(seed)
        try:
            model = factory()
        except Exception as e:
            raise ConfigError(f"--torch-model {spec!r}: calling it failed "
                              f"({type(e).__name__}: {first_line(e)})") from None
        if not isinstance(model, nn.Module):
            raise ConfigError(f"--torch-model {spec}: returned {type(model).__name__}, not a torch.nn.Module")
        model.eval()
        try:
            with torch.no_grad():
                y = model(torch.zeros(shape))
        except Exception as e:
            raise ConfigError(f"--torch-model {spec}: the model rejects a {shape} NCHW input "
                              f"({type(e).__name__}: {first_line(e)})") from None
        finally:
            model.train()
    got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
    if got != (2, num_classes):
        raise ConfigError(f"--torch-model {spec}: its output for a {shape} NCHW input is {got}, not "
                          f"(N, {num_classes}) class logits")
    return model
