"""The Flax NNX twin: conv blocks → global average pool → Dense, built from a `ModelConfig`.

Module paths mirror the torch twin (`features.c1.0.conv`, `features.c1.0.bn`, `fc`), so the key
map in `flax_cnn.model.weights` is a list of renames and layout changes, nothing more.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from flax_cnn.model.config import ConvSpec, ModelConfig
from flax_cnn.model.layers import ACTIVATIONS, BatchNorm2d, Conv2d, Dropout, Linear, SeparableConv2d


class ConvBNAct(nnx.Module):
    """conv → BatchNorm → activation → dropout: the unit every conv layer of the trunk uses; with
    `shortcut` its input is added to its output (ModelConfig.residual)."""

    def __init__(self, in_ch: int, spec: ConvSpec, cfg: ModelConfig, *, shortcut: bool = False,
                 rngs: nnx.Rngs):
        kw = dict(stride=spec.stride, dilation=spec.dilation, padding=spec.pad, rngs=rngs)
        if spec.separable:
            self.conv = SeparableConv2d(in_ch, spec.out_channels, spec.kernel_size, **kw)
        else:
            self.conv = Conv2d(in_ch, spec.out_channels, spec.kernel_size, groups=spec.groups, **kw)
        self.bn = BatchNorm2d(spec.out_channels, momentum=cfg.bn_momentum, eps=cfg.bn_eps,
                              unbiased_running_var=cfg.bn_unbiased_running_var)
        if shortcut and cfg.zero_init_residual:
            self.bn.scale.set_value(jnp.zeros_like(self.bn.scale.get_value()))
        self.shortcut = shortcut
        self.act_name = cfg.activation
        self.drop = Dropout(cfg.dropout, channel=cfg.dropout_kind == "channel")

    def __call__(self, x, key=None):
        y = self.drop(ACTIVATIONS[self.act_name](self.bn(self.conv(x))), key)
        return x + y if self.shortcut else y


class Block(nnx.Module):
    """One named block (C1…C4): a list of ConvBNAct layers."""

    def __init__(self, in_ch: int, specs: tuple[ConvSpec, ...], cfg: ModelConfig, *,
                 shortcuts: list[bool], rngs: nnx.Rngs):
        layers = []
        for spec, shortcut in zip(specs, shortcuts):
            layers.append(ConvBNAct(in_ch, spec, cfg, shortcut=shortcut, rngs=rngs))
            in_ch = spec.out_channels
        self.layers = nnx.List(layers)

    def __call__(self, x, keys=None):
        for i, layer in enumerate(self.layers):
            x = layer(x, None if keys is None else keys[i])
        return x


class Features(nnx.Module):
    """The conv trunk before global pooling; blocks are attributes named as in the config."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        in_ch = cfg.in_channels
        self.block_names = tuple(b.name for b in cfg.blocks)
        shortcuts = iter(cfg.shortcuts())
        for b in cfg.blocks:
            flags = [next(shortcuts) for _ in b.layers]
            setattr(self, b.name, Block(in_ch, b.layers, cfg, shortcuts=flags, rngs=rngs))
            in_ch = b.layers[-1].out_channels

    def __call__(self, x, key=None):
        """x: (N, H, W, C) float; `key` feeds dropout in train mode (one fold per layer)."""
        layer = 0
        for name in self.block_names:
            block = getattr(self, name)
            keys = None
            if key is not None:
                keys = [jax.random.fold_in(key, layer + i) for i in range(len(block.layers))]
            x = block(x, keys)
            layer += len(block.layers)
        return x


class CNN(nnx.Module):
    """The compact CIFAR-10 CNN. `forward_features` → (N, h, w, C); `forward_head` → logits."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.config = cfg
        self.features = Features(cfg, rngs=rngs)
        self.fc = Linear(cfg.feature_channels, cfg.num_classes, rngs=rngs)

    def forward_features(self, x, key=None):
        return self.features(x, key)

    def forward_head(self, f):
        return self.fc(f.mean(axis=(1, 2)))

    def __call__(self, x, key=None):
        return self.forward_head(self.forward_features(x, key))


def build_model(config: ModelConfig | None = None, *, seed: int = 0) -> CNN:
    """Build the Flax twin (train mode) with torch-like random init drawn from `seed`."""
    config = config or ModelConfig()
    return CNN(config, rngs=nnx.Rngs(params=seed))


def num_params(model: nnx.Module) -> int:
    """Trainable parameter count of a built model (BatchStats excluded)."""
    return sum(int(jnp.size(v)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
