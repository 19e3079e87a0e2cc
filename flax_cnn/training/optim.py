"""Adam as torch runs it, in optax: coupled L2 weight decay, per-step LR (and beta1) tables.

Parity trap: torch's `Adam(weight_decay=wd)` adds `wd * param` to the gradient *before* the
moment updates (coupled L2); it is not AdamW. `decoupled=True` gives AdamW (torch.optim.AdamW).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
import optax

if TYPE_CHECKING:
    from flax_cnn.training.config import TrainConfig

ADAM_EPS = 1e-8  # torch.optim.Adam's default


def table_schedule(table: np.ndarray):
    """An optax schedule that reads a precomputed float64 table by step: cast to float32, or kept
    float64 when JAX's x64 mode is on (the parity suite's float64 trajectory)."""
    values = jnp.asarray(np.asarray(table, np.float64), dtype=jnp.result_type(float))
    last = len(table) - 1
    return lambda count: values[jnp.minimum(count, last)]


def decays(params):
    """Which parameters weight decay applies to with --no-decay-norm-bias: the kernels (ndim > 1),
    not BatchNorm scales/shifts and biases — torch_ref.optim splits its param groups by the same rule."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def adam(lr_table: np.ndarray, beta1_table: np.ndarray | None = None, *, beta1: float = 0.9, beta2: float = 0.999,
         weight_decay: float = 0.0, decoupled: bool = False, decay_norm_bias: bool = True) -> optax.GradientTransformation:
    """torch.optim.Adam (or AdamW with `decoupled`) with the LR (and optionally beta1) per step;
    `decay_norm_bias=False` leaves the one-dimensional parameters undecayed (see `decays`)."""
    if beta1_table is not None:
        moments = optax.inject_hyperparams(optax.scale_by_adam)(
            b1=table_schedule(beta1_table), b2=beta2, eps=ADAM_EPS)
    else:
        moments = optax.scale_by_adam(b1=beta1, b2=beta2, eps=ADAM_EPS)
    lr = optax.scale_by_learning_rate(table_schedule(lr_table))
    decay = optax.add_decayed_weights(weight_decay, mask=None if decay_norm_bias else decays)
    if weight_decay and decoupled:
        return optax.chain(moments, decay, lr)
    if weight_decay:
        return optax.chain(decay, moments, lr)
    return optax.chain(moments, lr)


def from_config(cfg: TrainConfig, lr_table: np.ndarray, beta1_table: np.ndarray | None = None) -> optax.GradientTransformation:
    """The optimizer `cfg`'s flags ask for: the trainer and the parity suite's trajectory build it here, so a
    new optimizer flag reaches both (torch_ref.optim.make_optimizer is its twin)."""
    return adam(lr_table, beta1_table if cfg.cycle_momentum else None, beta1=cfg.beta1, beta2=cfg.beta2,
                weight_decay=cfg.weight_decay, decoupled=cfg.decoupled_weight_decay, decay_norm_bias=cfg.decay_norm_bias)
