"""The explicit key map between the Flax twin's state and the interchange format.

The interchange format is torch's: the torch twin's `state_dict()` names and layouts, stored as
safetensors. One table (`key_map`) lists every key with its Flax path, its torch shape and the
layout change; export and import both walk it and check every shape, so a missing, extra or
mis-shaped key is an error that names it.

Layout traps handled here: conv kernels HWIO ↔ OIHW (depthwise (k,k,1,C) ↔ (C,1,k,k) is the
same transpose), Dense kernel (in, out) ↔ weight (out, in), BatchNorm scale/mean/var ↔
weight/running_mean/running_var, and num_batches_tracked int32 ↔ int64.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from flax_cnn.model.config import ModelConfig

_HWIO_TO_OIHW = (3, 2, 0, 1)
_OIHW_TO_HWIO = (2, 3, 1, 0)


class WeightsError(ValueError):
    """A key is missing, unexpected or mis-shaped; the message names it."""


@dataclass(frozen=True)
class KeyMapping:
    torch_key: str
    flax_path: tuple
    torch_shape: tuple[int, ...]
    layout: str  # "conv" | "conv_transpose" | "dense" | "copy" | "count"

    def to_torch(self, a: np.ndarray) -> np.ndarray:
        if self.layout == "conv":
            return np.transpose(a, _HWIO_TO_OIHW).copy()
        if self.layout == "conv_transpose":  # (kh, kw, in, out/g) <-> torch's (in, out/g, kh, kw): self-inverse
            return np.transpose(a, (2, 3, 0, 1)).copy()
        if self.layout == "dense":
            return a.T.copy()
        if self.layout == "count":
            return np.asarray(a, dtype=np.int64)
        return np.asarray(a)

    def to_flax(self, a: np.ndarray) -> np.ndarray:
        """A fresh array: JAX may alias host memory, and torch mutates its buffers in place."""
        if self.layout == "conv":
            return np.transpose(a, _OIHW_TO_HWIO).copy()
        if self.layout == "conv_transpose":
            return np.transpose(a, (2, 3, 0, 1)).astype(np.float32)
        if self.layout == "dense":
            return a.T.copy()
        if self.layout == "count":
            return np.array(a, dtype=np.int32)
        return np.array(a, dtype=np.float32)


def key_map(cfg: ModelConfig) -> list[KeyMapping]:
    """Every tensor of the model: torch key, Flax state path, torch shape, layout change."""
    out: list[KeyMapping] = []
    cin = cfg.in_channels
    for block, i, s in cfg.layers():
        t, f = f"features.{block}.{i}", ("features", block, "layers", i)
        k = s.kernel_size
        if s.separable:
            out.append(KeyMapping(f"{t}.conv.depthwise.weight", f + ("conv", "depthwise", "kernel"), (cin, 1, k, k), "conv"))
            out.append(KeyMapping(f"{t}.conv.pointwise.weight", f + ("conv", "pointwise", "kernel"),
                                  (s.out_channels, cin, 1, 1), "conv"))
        else:
            out.append(KeyMapping(f"{t}.conv.weight", f + ("conv", "kernel"), (s.out_channels, cin // s.groups, k, k), "conv"))
        c = (s.out_channels,)
        out += [
            KeyMapping(f"{t}.bn.weight", f + ("bn", "scale"), c, "copy"),
            KeyMapping(f"{t}.bn.bias", f + ("bn", "bias"), c, "copy"),
            KeyMapping(f"{t}.bn.running_mean", f + ("bn", "mean"), c, "copy"),
            KeyMapping(f"{t}.bn.running_var", f + ("bn", "var"), c, "copy"),
            KeyMapping(f"{t}.bn.num_batches_tracked", f + ("bn", "num_batches_tracked"), (), "count"),
        ]
        cin = s.out_channels
    out.append(KeyMapping("fc.weight", ("fc", "kernel"), (cfg.num_classes, cin), "dense"))
    out.append(KeyMapping("fc.bias", ("fc", "bias"), (cfg.num_classes,), "copy"))
    return out


def _flat_state(model: nnx.Module) -> dict[tuple, nnx.Variable]:
    return {tuple(p): v for p, v in nnx.to_flat_state(nnx.state(model))}


def export_tensors(model: nnx.Module, mapping: Sequence[KeyMapping] | None = None) -> dict[str, np.ndarray]:
    """The model's parameters and BatchNorm statistics in torch naming and layout (numpy).

    `mapping` defaults to the twin's `key_map(model.config)`; `parity.port` passes a ported model's.
    """
    flat = _flat_state(model)
    out = {}
    for m in (key_map(model.config) if mapping is None else mapping):
        if m.flax_path not in flat:
            raise WeightsError(f"{m.torch_key}: the Flax model has no variable at {'/'.join(map(str, m.flax_path))}")
        a = m.to_torch(np.asarray(flat[m.flax_path].get_value()))
        if a.shape != m.torch_shape:
            raise WeightsError(f"{m.torch_key}: Flax variable has torch-layout shape {a.shape}, "
                               f"the key map expects {m.torch_shape}")
        out[m.torch_key] = a
    return out


def check_shapes(source: dict[str, tuple], target: dict[str, tuple]) -> None:
    """Raise WeightsError naming the first key (in target order) that is missing, mis-shaped or extra."""
    for key, want in target.items():
        if key not in source:
            raise WeightsError(f"missing key {key} (target expects shape {tuple(want)})")
        if tuple(source[key]) != tuple(want):
            raise WeightsError(f"shape mismatch at {key}: source has {tuple(source[key])}, target expects {tuple(want)}")
    extra = [k for k in source if k not in target]
    if extra:
        raise WeightsError(f"unexpected key {extra[0]} (shape {tuple(source[extra[0]])})"
                           + (f" and {len(extra) - 1} more" if len(extra) > 1 else ""))


def check_tensors(cfg: ModelConfig, tensors: dict[str, np.ndarray]) -> None:
    """Check torch-named tensors against the key map of `cfg`."""
    check_shapes({k: np.shape(v) for k, v in tensors.items()}, {m.torch_key: m.torch_shape for m in key_map(cfg)})


def import_tensors(model: nnx.Module, tensors: dict[str, np.ndarray],
                   mapping: Sequence[KeyMapping] | None = None) -> None:
    """Copy torch-named tensors into the model in place, after checking every key and shape.

    `mapping` defaults to the twin's `key_map(model.config)`; `parity.port` passes a ported model's.
    """
    mapping = key_map(model.config) if mapping is None else mapping
    check_shapes({k: np.shape(v) for k, v in tensors.items()}, {m.torch_key: m.torch_shape for m in mapping})
    flat = _flat_state(model)
    for m in mapping:
        var = flat[m.flax_path]
        new = m.to_flax(np.asarray(tensors[m.torch_key]))
        if new.shape != var.get_value().shape:
            raise WeightsError(f"{m.torch_key}: converts to {new.shape}, Flax variable is {var.get_value().shape}")
        var.set_value(jnp.asarray(new, dtype=var.get_value().dtype))


def save_safetensors(tensors: dict[str, np.ndarray], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.array(v, order="C") for k, v in tensors.items()}, str(path), metadata=metadata)


def load_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of `path`; FileError (one line naming it) if it is missing, truncated or not safetensors."""
    from flax_cnn.runtime.files import read_safetensors

    return read_safetensors(path)


def save_weights(model: nnx.Module, path: str | Path) -> None:
    """Write the model as safetensors in torch naming (loadable by `torch_ref` with strict=True)."""
    save_safetensors(export_tensors(model), path, {"format": "pt", "producer": "flax_cnn"})


def load_weights(model: nnx.Module, path: str | Path) -> None:
    """Load torch-named safetensors (written by either twin) into the Flax model in place.

    FileError naming the file if it cannot be read or does not fit the model (a key or shape).
    """
    from flax_cnn.runtime.faults import FileError

    tensors = load_safetensors(path)
    try:
        import_tensors(model, tensors)
    except WeightsError as e:
        raise FileError(f"{path}: these weights do not fit the model ({e})") from None
