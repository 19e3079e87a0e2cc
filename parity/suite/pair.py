"""The pair under test: two models, the key map between them, and the layers worth comparing.

`project_twins` builds this project's pair from a `ModelConfig`; `parity.port` builds one for any
torch CNN, and the families take either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

import torch_ref
from flax_cnn.model.config import ModelConfig
from flax_cnn.model.cnn import build_model
from flax_cnn.model.weights import key_map as project_key_map
from parity.suite.twins import KeyMappingLike, ModulePair, module_pairs


@dataclass
class TwinPair:
    """A torch model and a Flax model that should be the same function, and how to line them up.

    `layer_pairs` are (torch module, Flax module) whose outputs the "layers" family compares;
    `dropout_pairs` are the dropout sites, swapped for fixed masks in train-mode checks.
    """

    torch_model: torch.nn.Module
    flax_model: object
    key_map: Sequence[KeyMappingLike]
    layer_pairs: Sequence[ModulePair] = ()
    dropout_pairs: Sequence[ModulePair] = ()
    notes: list[str] = field(default_factory=list)
    kink_probe: object | None = None
    """A `kinks.KinkProbe` that reads every kink op's input (a ported model's); None: layer outputs."""


def project_pairs(cfg: ModelConfig) -> tuple[list[ModulePair], list[ModulePair]]:
    """(layer pairs, dropout pairs) of the twins: every conv/BN/fc, and each conv unit's output
    (after activation and dropout), in the order they run."""
    units = [(f"features.{b}.{i}", ("features", b, "layers", i)) for b, i, _ in cfg.layers()]
    layers = module_pairs(project_key_map(cfg)) + units
    drops = [(f"{t}.drop", p + ("drop",)) for t, p in units]
    return layers, drops


def randomize_bn_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random BN affine parameters and running statistics, so eval mode is not the 0/1 identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.4 - 0.2)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
    return model


def flax_skeleton(cfg: ModelConfig):
    """The Flax twin with zero-filled variables: the families copy torch's weights into it anyway.

    Traced with `nnx.eval_shape` and filled from host zeros, it costs no XLA compile; an eager
    `build_model` compiles one random-init op per parameter shape (seconds on a busy CPU).
    """
    model = nnx.eval_shape(lambda: build_model(cfg))
    for _, var in nnx.to_flat_state(nnx.state(model)):
        spec = var.get_value()
        var.set_value(jnp.asarray(np.zeros(spec.shape, spec.dtype)))
    return model


def project_twins(cfg: ModelConfig, *, weights: str | Path | None = None, seed: int = 0,
                  flax_cfg: ModelConfig | None = None) -> TwinPair:
    """torch_ref and flax_cnn twins of `cfg`; torch weights from `weights` (safetensors) or random.

    Random weights get random BN statistics too. `flax_cfg` builds the Flax side from another
    config (how the tests inject BN traps); the families copy torch's weights into it anyway.
    """
    tm = torch_ref.build_model(cfg, seed=seed)
    if weights is not None:
        from torch_ref.weights import load_weights

        load_weights(tm, weights)
        notes = [f"weights: {weights}"]
    else:
        randomize_bn_(tm, seed + 1)
        notes = [f"weights: random (torch default init, seed {seed}, random BN statistics)"]
    fm = flax_skeleton(flax_cfg or cfg)
    layers, drops = project_pairs(cfg)
    return TwinPair(tm, fm, project_key_map(cfg), layers, drops, notes)
