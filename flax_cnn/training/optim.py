"""Adam as torch runs it, in optax: coupled L2 weight decay, per-step LR (and beta1) tables.

Parity trap: torch's `Adam(weight_decay=wd)` adds `wd * param` to the gradient *before* the
moment updates (coupled L2); it is not AdamW. `decoupled=True` gives AdamW (torch.optim.AdamW).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

ADAM_EPS = 1e-8  # torch.optim.Adam's default


def table_schedule(table: np.ndarray):
    """An optax schedule that reads a precomputed float64 table by step: cast to float32, or kept
    float64 when JAX's x64 mode is on (the parity suite's float64 trajectory)."""
    values = jnp.asarray(np.asarray(table, np.float64), dtype=jnp.result_type(float))
    last = len(table) - 1
    return lambda count: values[jnp.minimum(count, last)]


def adam(lr_table: np.ndarray, beta1_table: np.ndarray | None = None, *, beta1: float = 0.9, beta2: float = 0.999,
         weight_decay: float = 0.0, decoupled: bool = False) -> optax.GradientTransformation:
    """torch.optim.Adam (or AdamW with `decoupled`) with the LR (and optionally beta1) per step."""
    if beta1_table is not None:
        moments = optax.inject_hyperparams(optax.scale_by_adam)(
            b1=table_schedule(beta1_table), b2=beta2, eps=ADAM_EPS)
    else:
        moments = optax.scale_by_adam(b1=beta1, b2=beta2, eps=ADAM_EPS)
    lr = optax.scale_by_learning_rate(table_schedule(lr_table))
    if weight_decay and decoupled:
        return optax.chain(moments, optax.add_decayed_weights(weight_decay), lr)
    if weight_decay:
        return optax.chain(optax.add_decayed_weights(weight_decay), moments, lr)
    return optax.chain(moments, lr)
