"""torch.optim.Adam (coupled L2) or AdamW, with torch's own LR schedulers, from a TrainConfig.

These are the reference the JAX side (`flax_cnn.training.optim`, `flax_cnn.training.schedules`) must reproduce.
"""

from __future__ import annotations

import torch

from flax_cnn.training.config import TrainConfig


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW; with --no-decay-norm-bias two param groups, the 1-D parameters (BatchNorm
    scales/shifts, biases) without weight decay (flax_cnn.training.optim.decays: the same rule)."""
    cls = torch.optim.AdamW if cfg.decoupled_weight_decay else torch.optim.Adam
    if not cfg.decay_norm_bias:
        params = list(params)
        params = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    # AdamW's own default weight_decay is 0.01: always pass ours explicitly.
    return cls(params, lr=cfg.max_lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8, weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """The per-batch LR scheduler of `cfg.schedule` (None for constant)."""
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.max_lr, total_steps=total, pct_start=cfg.pct_start, anneal_strategy="cos",
            div_factor=cfg.div_factor, final_div_factor=cfg.final_div_factor,
            cycle_momentum=cfg.cycle_momentum, base_momentum=0.85, max_momentum=0.95)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=cfg.max_lr / cfg.final_div_factor)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_epochs * steps_per_epoch, gamma=cfg.step_gamma)
    if cfg.schedule == "constant":
        return None
    raise ValueError(f"unknown schedule {cfg.schedule!r}")
