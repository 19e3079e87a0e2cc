"""The ported model's key map (flax_cnn.model.weights.KeyMapping rows) and its safetensors in torch naming.

Derived from the layers the translator built, one row per torch state_dict tensor: the same
shape-checked `export_tensors` / `import_tensors` as the twins use, so there is one way to move
weights. A state_dict tensor that no ported layer owns is a PortError (nothing half-ported).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from flax import nnx

from flax_cnn.model import weights as fw
from flax_cnn.model.weights import KeyMapping
from parity.port import layers as pl
from parity.port.errors import PortError

# (torch tensor name, Flax variable name, layout) per ported layer type
_TENSORS: dict[type, tuple[tuple[str, str, str], ...]] = {
    pl.Conv2d: (("weight", "kernel", "conv"), ("bias", "bias", "copy")),
    pl.BatchNorm2d: (("weight", "scale", "copy"), ("bias", "bias", "copy"), ("running_mean", "mean", "copy"),
                     ("running_var", "var", "copy"), ("num_batches_tracked", "num_batches_tracked", "count")),
    pl.Linear: (("weight", "kernel", "dense"), ("bias", "bias", "copy")),
}


def build_key_map(torch_module: torch.nn.Module, layers: dict[str, nnx.Module]) -> tuple[KeyMapping, ...]:
    """Rows in torch state_dict order; every state_dict tensor must belong to a ported layer."""
    sd = torch_module.state_dict()
    by_key: dict[str, KeyMapping] = {}
    for path, layer in layers.items():
        for t_name, f_name, layout in _TENSORS.get(type(layer), ()):
            key = f"{path}.{t_name}"
            if key in sd:
                by_key[key] = KeyMapping(key, (*path.split("."), f_name), tuple(sd[key].shape), layout)
    missing = [k for k in sd if k not in by_key]
    if missing:
        owner = missing[0].rpartition(".")[0] or "<root>"
        raise PortError(owner, f"state_dict tensor {missing[0]} belongs to no ported layer (a parameter or buffer "
                        "read directly, or a module the traced forward never calls)"
                        + (f"; {len(missing) - 1} more" if len(missing) > 1 else ""))
    return tuple(by_key[k] for k in sd)


def torch_tensors(torch_module: torch.nn.Module) -> dict[str, np.ndarray]:
    """state_dict as numpy copies: JAX may alias host memory, and torch updates BN buffers in place."""
    return {k: v.detach().cpu().numpy().copy() for k, v in torch_module.state_dict().items()}


def export_tensors(module: nnx.Module, key_map) -> dict[str, np.ndarray]:
    return fw.export_tensors(module, key_map)


def import_tensors(module: nnx.Module, tensors: dict[str, np.ndarray], key_map) -> None:
    fw.import_tensors(module, tensors, key_map)


def save_weights(module: nnx.Module, key_map, path: str | Path) -> None:
    """Safetensors in torch naming and layout: `torch_module.load_state_dict` reads it with strict=True."""
    fw.save_safetensors(export_tensors(module, key_map), path, {"format": "pt", "producer": "parity.port"})


def load_weights(module: nnx.Module, key_map, path: str | Path) -> None:
    """Torch-named safetensors (from torch or a port) into the ported module, every key and shape checked."""
    import_tensors(module, fw.load_safetensors(path), key_map)
