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
