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


def projection_tree(shapes, seed: int = 0):
    """`projection` for every tensor of a tuple/list/dict output (torch shapes, same structure), each seeded
    apart: loss = the sum of each output's sum(out * P) / N."""
    if isinstance(shapes, dict):
        return {k: projection_tree(v, seed + 7919 * i) for i, (k, v) in enumerate(shapes.items())}
    if isinstance(shapes, list):
        return tuple(projection_tree(v, seed + 7919 * i) for i, v in enumerate(shapes))
    return projection(shapes, seed)


def is_projection(labels) -> bool:
    return isinstance(labels, (tuple, dict)) or getattr(labels, "ndim", 1) != 1


def _each(out, labels, leaf):
    """The sum of `leaf(o, p)` over the tensors of a structured output and its projection tree."""
    if isinstance(labels, dict):
        return sum(_each(out[k], p, leaf) for k, p in labels.items())
    if isinstance(labels, tuple):
        return sum(_each(o, p, leaf) for o, p in zip(out, labels))
    return leaf(out, labels)


def torch_loss(out, labels, label_smoothing: float = 0.0):
    """Cross-entropy of (N, classes) logits against int labels, or the projection loss of any output."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    if not is_projection(labels):
        return F.cross_entropy(out, torch.from_numpy(np.asarray(labels).astype(np.int64)),
                               label_smoothing=label_smoothing)
    return _each(out, labels, lambda o, p: (o * torch.from_numpy(np.asarray(p)).to(o.dtype)).sum() / o.shape[0])


def flax_labels(labels):
    """Labels as the Flax loss takes them: int32, or the projection (tree) in Flax layout (NHWC for 4-D)."""
    import jax.numpy as jnp
    import numpy as np

    if isinstance(labels, dict):
        return {k: flax_labels(v) for k, v in labels.items()}
    if isinstance(labels, tuple):
        return tuple(flax_labels(v) for v in labels)
    if not is_projection(labels):
        return jnp.asarray(labels, jnp.int32)
    p = np.asarray(labels)
    return jnp.asarray(p.transpose(0, 2, 3, 1) if p.ndim == 4 else p)


def flax_loss(out, labels, label_smoothing: float = 0.0):
    if not isinstance(labels, (tuple, dict)) and labels.ndim == 1:
        return smoothed_cross_entropy(out, labels, label_smoothing)
    return _each(out, labels, lambda o, p: (o * p.astype(o.dtype)).sum() / o.shape[0])
