"""The loss the gradient-side families differentiate: torch's label-smoothed cross-entropy in JAX,
kept in the logits' dtype so a float64 proof stays float64."""

from __future__ import annotations

import jax
import optax


def smoothed_cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Mean CE with torch's `label_smoothing`, in the logits' dtype.

    `flax_cnn.training.step.cross_entropy` casts to float32 (right for training, wrong for a float64 proof).
    """
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    if label_smoothing:
        onehot = optax.smooth_labels(onehot, label_smoothing)
    return optax.softmax_cross_entropy(logits, onehot).mean()


def projection(shape: tuple[int, ...], seed: int = 0):
    """The gradient families' "labels" for an output that is not (N, classes) logits: a fixed random
    projection P (standard normal / sqrt(values per sample), torch layout), loss = sum(out * P) / N.
    Every output value gets a gradient, and the loss is a plain linear functional of the output."""
    import math

    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) / math.sqrt(math.prod(shape[1:]))).astype(np.float64)


def is_projection(labels) -> bool:
    return getattr(labels, "ndim", 1) != 1


def torch_loss(out, labels, label_smoothing: float = 0.0):
    """Cross-entropy of (N, classes) logits against int labels, or the projection loss of any output."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    if not is_projection(labels):
        return F.cross_entropy(out, torch.from_numpy(np.asarray(labels).astype(np.int64)),
                               label_smoothing=label_smoothing)
    return (out * torch.from_numpy(np.asarray(labels)).to(out.dtype)).sum() / out.shape[0]


def flax_labels(labels):
    """Labels as the Flax loss takes them: int32, or the projection in Flax layout (NHWC for 4-D)."""
    import jax.numpy as jnp
    import numpy as np

    if not is_projection(labels):
        return jnp.asarray(labels, jnp.int32)
    p = np.asarray(labels)
    return jnp.asarray(p.transpose(0, 2, 3, 1) if p.ndim == 4 else p)


def flax_loss(out, labels, label_smoothing: float = 0.0):
    if labels.ndim == 1:
        return smoothed_cross_entropy(out, labels, label_smoothing)
    return (out * labels.astype(out.dtype)).sum() / out.shape[0]
