"""The array functions a ported program calls, by name; axes are already in the stored layout.

Each takes and returns jnp arrays (or Python ints for shape queries). Activations follow torch's
definitions: GELU is exact erf unless `approximate='tanh'`; LeakyReLU's default slope is 0.01.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from parity.port.program import NHWC

TO_NHWC, TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


def to_nhwc(x):
    return jnp.transpose(x, TO_NHWC)


def to_nchw(x):
    return jnp.transpose(x, TO_NCHW)


def torch_shape(x, layout: str) -> tuple[int, ...]:
    """The shape torch sees: (N, C, H, W) for a value stored NHWC."""
    s = tuple(x.shape)
    return (s[0], s[3], s[1], s[2]) if layout == NHWC else s


def size(x, dim: int | None = None, *, layout: str):
    s = torch_shape(x, layout)
    return s if dim is None else s[dim]


def flatten(x, start_dim: int = 0, end_dim: int = -1):
    """torch.flatten on a torch-layout array."""
    nd = x.ndim
    if nd == 0:
        return x.reshape(1)
    s, e = start_dim % nd, end_dim % nd
    return x.reshape(x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:])


def reshape(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return jnp.reshape(x, shape)


def permute(x, *dims):
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    return jnp.transpose(x, dims)


def transpose(x, dim0: int, dim1: int):
    return jnp.swapaxes(x, dim0, dim1)


def pad(x, widths: tuple[tuple[int, int], ...], value: float = 0.0):
    """Constant padding per axis; negative widths crop, as in torch's F.pad."""
    return lax.pad(x, jnp.asarray(value, x.dtype), [(lo, hi, 0) for lo, hi in widths])


def add(a, b, alpha=1):
    return a + b * alpha if alpha != 1 else a + b


def sub(a, b, alpha=1):
    return a - b * alpha if alpha != 1 else a - b


def _gelu(x, approximate: str = "none"):
    return jax.nn.gelu(x, approximate=approximate == "tanh")


def _hardsigmoid(x):
    return jax.nn.relu6(x + 3.0) / 6.0


def _leaky_relu(x, negative_slope: float = 0.01):
    return jnp.where(x > 0, x, x * negative_slope)


FUNCTIONS: dict[str, Callable] = {
    # elementwise activations (torch definitions)
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "leaky_relu": _leaky_relu,
    "gelu": _gelu,
    "silu": jax.nn.silu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "hardswish": jax.nn.hard_swish,  # x * relu6(x + 3) / 6, torch's order of operations
    "hardsigmoid": _hardsigmoid,
    # arithmetic
    "add": add,
    "sub": sub,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "neg": lambda a: -a,
    # shape and layout
    "to_nhwc": to_nhwc,
    "to_nchw": to_nchw,
    "size": size,
    "flatten": flatten,
    "reshape": reshape,
    "permute": permute,
    "transpose": transpose,
    "identity": lambda x: x,
    "stop_gradient": lax.stop_gradient,
    "getitem": lambda x, idx: x[idx],
    "pad": pad,
    # reductions and joins
    "cat": lambda xs, axis: jnp.concatenate(xs, axis=axis),
    "mean": lambda x, axis, keepdims=False: jnp.mean(x, axis=axis, keepdims=keepdims),
    "sum": lambda x, axis, keepdims=False: jnp.sum(x, axis=axis, keepdims=keepdims),
    "softmax": lambda x, axis: jax.nn.softmax(x, axis=axis),
    "log_softmax": lambda x, axis: jax.nn.log_softmax(x, axis=axis),
}
