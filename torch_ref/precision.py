"""The torch twin's `--precision`: float32, or bf16 autocast — the JAX step's `compute_dtype` in torch.

Under bf16 autocast convs and matmuls run in bfloat16 while parameters, their gradients, BatchNorm's
statistics and running buffers stay float32 (torch's CPU and CUDA BatchNorm take bf16 input with
float32 weights and accumulate in float32), and the loss is taken on float32 logits; the JAX step
casts weights per conv and computes BatchNorm in float32 the same way (`flax_cnn.model.layers`).
"""

from __future__ import annotations

import contextlib

import torch

from flax_cnn.model.config import ConfigError

PRECISIONS = ("fp32", "bf16")


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The context a forward pass and its loss run in for `precision` on `device`."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
