"""BatchNorm's training-mode normalisation over N, H, W of NHWC input, with a hand-written backward.

Autodiff of the two-pass forward leaves XLA extra full-size tensors to write in the backward (the
variance's `2 (x - mean) dvar / n` term among them). The closed form needs two per-channel sums
and one element-wise pass, `dx = a * dy + b * (x - mean) + c`: bytes written by the train step's
fused loops 854 -> 721 MB, step 0.93-0.97x in five A/Bs (docs/performance.md). Same math as
autodiff: they agree to 1e-15 in float64 (tests/test_batch_norm.py). Ported models use it too:
`parity.port.emit` copies these definitions into each emitted model.py (so: jax and functools only).
"""

from __future__ import annotations

import functools

import jax

_AXES = (0, 1, 2)


def normalize(x, mean, var, scale, bias, eps: float):
    """(x - mean) / sqrt(var + eps) * scale + bias, per channel (the last axis): training and eval alike."""
    return (x - mean) * (jax.lax.rsqrt(var + eps) * scale) + bias


def _bn_forward(x, scale, bias, eps: float):
    mean = x.mean(_AXES)
    var = ((x - mean) ** 2).mean(_AXES)  # two-pass, as torch computes it: no cancellation
    return (normalize(x, mean, var, scale, bias, eps), mean, var), jax.lax.rsqrt(var + eps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x, scale, bias, eps: float):
    """(y, batch mean, biased batch variance) of NHWC `x`; y = (x - mean) / sqrt(var + eps) * scale + bias."""
    return _bn_forward(x, scale, bias, eps)[0]


def _bn_fwd(x, scale, bias, eps):
    out, inv = _bn_forward(x, scale, bias, eps)
    return out, (x, out[1], inv, scale, bias)


def _bn_bwd(eps, res, cotangents):
    """Gradients for cotangents (dy, dmean, dvar); dmean and dvar are zero unless a loss uses the statistics."""
    x, mean, inv, scale, bias = res
    dy, dmean, dvar = cotangents
    n = x.shape[0] * x.shape[1] * x.shape[2]
    sum_dy = dy.sum(_AXES)
    sum_dy_xc = (dy * (x - mean)).sum(_AXES)
    a = scale * inv
    b = (2.0 * dvar - a * inv * inv * sum_dy_xc) / n
    c = (dmean - a * sum_dy) / n
    dx = a * dy + b * (x - mean) + c
    return dx.astype(x.dtype), (sum_dy_xc * inv).astype(scale.dtype), sum_dy.astype(bias.dtype)


batch_norm_train.defvjp(_bn_fwd, _bn_bwd)
