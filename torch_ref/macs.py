"""Multiply-accumulates of one forward, counted by torch's own FlopCounterMode."""

from __future__ import annotations

import torch


def forward_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    """MACs of `model(x)` in eval mode (2 flops per multiply-accumulate); every module's mode and
    state are as before."""
    from torch.utils.flop_counter import FlopCounterMode

    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for m, training in modes.items():
            m.training = training
    return counter.get_total_flops() // 2
