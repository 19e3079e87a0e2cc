"""Convolution kernels for the Flax twin (NHWC activations, HWIO kernels).

Every conv pads symmetrically by an explicit amount, as torch's `padding=` does. XLA's 'SAME'
pads a stride-2 3×3 conv on an even map by (0, 1) instead of (1, 1) — a parity trap.

Depthwise convs are written as k×k shifted multiply-adds: XLA:CPU lowers
`feature_group_count` convs 15-40× slower than this form (see `python -m parity.bench`).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")


def _out(size: int, k: int, stride: int, dilation: int, padding: int) -> int:
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def depthwise_conv2d(x, w, *, stride: int, dilation: int, padding: int):
    """Depthwise conv, x (N,H,W,C), w (k,k,1,C), as a sum of k*k strided slices times weights."""
    k = w.shape[0]
    n, h, wd, c = x.shape
    ho, wo = _out(h, k, stride, dilation, padding), _out(wd, k, stride, dilation, padding)
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    acc = None
    for i in range(k):
        for j in range(k):
            r0, c0 = i * dilation, j * dilation
            sl = lax.slice(xp, (0, r0, c0, 0), (n, r0 + (ho - 1) * stride + 1, c0 + (wo - 1) * stride + 1, c),
                           (1, stride, stride, 1))
            term = sl * w[i, j, 0]
            acc = term if acc is None else acc + term
    return acc


def pointwise_conv2d(x, w):
    """1×1 conv as a matmul over channels: x (N,H,W,Cin), w (1,1,Cin,Cout)."""
    return jnp.einsum("nhwc,cd->nhwd", x, w[0, 0])


def dense_conv2d(x, w, *, stride: int, dilation: int, padding: int, groups: int = 1):
    """A regular (or grouped) conv through XLA's convolution with explicit symmetric padding."""
    return lax.conv_general_dilated(
        x, w, window_strides=(stride, stride), padding=((padding, padding), (padding, padding)),
        rhs_dilation=(dilation, dilation), dimension_numbers=_DIMS, feature_group_count=groups)


def conv2d(x, w, *, stride: int = 1, dilation: int = 1, padding: int = 0, groups: int = 1):
    """Dispatch to the fastest exact formulation for this conv's shape."""
    w = w.astype(x.dtype)
    if groups > 1 and groups == x.shape[-1] and w.shape[2] == 1 and w.shape[3] == groups:
        return depthwise_conv2d(x, w, stride=stride, dilation=dilation, padding=padding)
    if w.shape[0] == 1 and w.shape[1] == 1 and stride == 1 and padding == 0 and groups == 1:
        return pointwise_conv2d(x, w)
    return dense_conv2d(x, w, stride=stride, dilation=dilation, padding=padding, groups=groups)
