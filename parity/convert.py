"""Weights between the twins: torch state_dict ↔ Flax NNX state, via the explicit key map.

The key map and its per-key shape checks live in `flax_cnn.model.weights` (the Flax twin's view of
the interchange naming); these functions add the torch side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from flax import nnx

from flax_cnn.model import weights as fw
from torch_ref import weights as tw


def torch_to_flax(torch_model: torch.nn.Module, flax_model: nnx.Module) -> nnx.Module:
    """Copy every parameter and BatchNorm statistic of `torch_model` into `flax_model`."""
    # Copies: a numpy view of a torch buffer would alias it, and BN updates it in place.
    tensors = {k: v.detach().cpu().numpy().copy() for k, v in torch_model.state_dict().items()}
    fw.import_tensors(flax_model, tensors)
    return flax_model


def flax_to_torch(flax_model: nnx.Module, torch_model: torch.nn.Module) -> torch.nn.Module:
    """Copy every parameter and BatchNorm statistic of `flax_model` into `torch_model`."""
    tensors = fw.export_tensors(flax_model)
    tw.load_state(torch_model, {k: torch.from_numpy(np.array(v, copy=True, order="C")) for k, v in tensors.items()})
    return torch_model


def save_weights(model, path: str | Path) -> None:
    """Safetensors in torch naming, from either twin."""
    if isinstance(model, torch.nn.Module):
        tw.save_weights(model, path)
    else:
        fw.save_weights(model, path)


def load_weights(model, path: str | Path):
    """Load safetensors written by either twin into `model` (either twin), in place."""
    if isinstance(model, torch.nn.Module):
        tw.load_weights(model, path)
    else:
        fw.load_weights(model, path)
    return model
