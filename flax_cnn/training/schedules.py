"""Learning-rate (and beta1) schedules, stepped per batch, computed in float64 on the host.

Parity trap: torch's `OneCycleLR` puts its phase boundary at step `pct_start*total - 1` and ends
at `total - 1`; optax's one-cycle schedules place them differently. `onecycle` below follows
torch's code step for step. Tables are computed once in float64 (as torch computes its LRs in
Python floats) and indexed inside the jitted step: a float32 cosine would be 3e-5 off near the
final LR, where `cos(pi*pct) + 1` cancels.
"""

from __future__ import annotations

import math

import numpy as np

from flax_cnn.model.config import ConfigError


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def onecycle(step: int, *, total_steps: int, max_lr: float, pct_start: float = 0.3, div_factor: float = 25.0,
             final_div_factor: float = 1e4, base_momentum: float = 0.85, max_momentum: float = 0.95
             ) -> tuple[float, float]:
    """(lr, beta1) of torch.optim.lr_scheduler.OneCycleLR (two phases, cosine) at `step`."""
    if not 0 <= step <= total_steps:
        raise ValueError(f"step {step} outside [0, {total_steps}]")
    initial = max_lr / div_factor
    phases = [  # (end_step, lr start, lr end, momentum start, momentum end), as torch builds them
        (float(pct_start * total_steps) - 1, initial, max_lr, max_momentum, base_momentum),
        (total_steps - 1, max_lr, initial / final_div_factor, base_momentum, max_momentum),
    ]
    start_step = 0.0
    for i, (end_step, lr0, lr1, m0, m1) in enumerate(phases):
        if step <= end_step or i == len(phases) - 1:
            pct = (step - start_step) / (end_step - start_step)
            return _cos_anneal(lr0, lr1, pct), _cos_anneal(m0, m1, pct)
        start_step = end_step
    raise AssertionError("unreachable")


def cosine(step: int, *, total_steps: int, max_lr: float, min_lr: float) -> float:
    """torch CosineAnnealingLR(T_max=total_steps, eta_min=min_lr), closed form."""
    return min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * step / total_steps)) / 2


def step_decay(step: int, *, max_lr: float, step_size: int, gamma: float) -> float:
    """torch StepLR(step_size, gamma), stepped per batch."""
    return max_lr * gamma ** (step // step_size)


def tables(cfg, steps_per_epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(lr, beta1) for every step 0…total of a run of `cfg` (a TrainConfig), float64."""
    total = cfg.epochs * steps_per_epoch
    steps = range(total + 1)
    beta1 = np.full(total + 1, cfg.beta1)
    if cfg.schedule == "onecycle":
        if float(cfg.pct_start * total) == 1:  # a warm-up of zero length: torch's OneCycleLR divides by zero
            raise ConfigError(f"--pct-start: {cfg.pct_start} × {total} steps puts the one-cycle peak at step 0; "
                              "change it or the number of steps (epochs, examples, batch size)")
        pairs = [onecycle(s, total_steps=total, max_lr=cfg.max_lr, pct_start=cfg.pct_start,
                          div_factor=cfg.div_factor, final_div_factor=cfg.final_div_factor) for s in steps]
        lr = np.array([p[0] for p in pairs])
        if cfg.cycle_momentum:
            beta1 = np.array([p[1] for p in pairs])
    elif cfg.schedule == "cosine":
        lr = np.array([cosine(s, total_steps=total, max_lr=cfg.max_lr, min_lr=cfg.max_lr / cfg.final_div_factor)
                       for s in steps])
    elif cfg.schedule == "step":
        lr = np.array([step_decay(s, max_lr=cfg.max_lr, step_size=cfg.step_epochs * steps_per_epoch,
                                  gamma=cfg.step_gamma) for s in steps])
    elif cfg.schedule == "constant":
        lr = np.full(total + 1, cfg.max_lr)
    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}")
    return lr, beta1
