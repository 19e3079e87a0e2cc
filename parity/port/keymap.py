"""The ported model's key map: one row per torch state_dict tensor (torch key, Flax path, torch shape,
layout change), derived from the layers the translator recorded and the tensors forward reads directly.

The same rows are written into `model.py` (its `load` / `state_dict`) and handed to the parity suite
as `flax_cnn.model.weights.KeyMapping`s. A state_dict tensor that no ported op reads (a module
forward never calls) is not an error: it is kept in the weights and listed as unused.
"""

from __future__ import annotations

import numpy as np
import torch

from flax_cnn.model.weights import KeyMapping
from parity.port.emit import Param
from parity.port.layers import LayerSpec


def build_key_map(torch_module: torch.nn.Module, layers: dict[str, LayerSpec], params: dict[str, Param]
                  ) -> tuple[tuple[KeyMapping, ...], tuple[tuple[str, tuple, str], ...]]:
    """(rows in torch state_dict order, (key, shape, layout) of the tensors no ported op reads)."""
    sd = torch_module.state_dict()
    by_key: dict[str, KeyMapping] = {}
    for path, spec in layers.items():
        for t_name, f_name, layout in spec.tensors:
            key = f"{path}.{t_name}"
            if key in sd:
                by_key[key] = KeyMapping(key, (*path.split("."), f_name), tuple(sd[key].shape), layout)
    for key in params:
        if key in sd:
            by_key[key] = KeyMapping(key, tuple(key.split(".")), tuple(sd[key].shape), "copy")
    rows = tuple(by_key[k] for k in sd if k in by_key)
    unused = tuple((k, tuple(v.shape), "copy" if v.is_floating_point() else "count")
                   for k, v in sd.items() if k not in by_key)
    return rows, unused


def torch_tensors(torch_module: torch.nn.Module) -> dict[str, np.ndarray]:
    """state_dict as numpy copies: JAX may alias host memory, and torch updates BN buffers in place."""
    return {k: v.detach().cpu().numpy().copy() for k, v in torch_module.state_dict().items()}
