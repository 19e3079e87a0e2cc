"""Safetensors weights of the torch twin, in its own (interchange) naming; no pickle anywhere."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from flax_cnn.model.weights import WeightsError, check_shapes


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Write `model.state_dict()` as safetensors (readable by `flax_cnn.model.weights.load_weights`)."""
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(path), metadata={"format": "pt", "producer": "torch_ref"})


def load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load a torch-named dict after checking every key and shape (errors name the key)."""
    target = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_shapes({k: tuple(v.shape) for k, v in tensors.items()}, target)
    model.load_state_dict(tensors, strict=True)


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load safetensors written by either twin into `model` in place.

    FileError naming the file if it cannot be read or does not fit the model (a key or shape).
    """
    from flax_cnn.runtime.faults import FileError
    from flax_cnn.runtime.files import read_safetensors

    tensors = read_safetensors(path, framework="pt")
    try:
        load_state(model, tensors)
    except WeightsError as e:
        raise FileError(f"{path}: these weights do not fit the model ({e})") from None
