"""The array functions a ported program calls, by name; axes are already in the stored layout.

Each takes and returns jnp arrays (or Python ints for shape queries). Activations follow torch's
definitions: GELU is exact erf unless `approximate='tanh'`; LeakyReLU's default slope is 0.01.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
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


def chunk(x, chunks: int, *, axis: int) -> tuple:
    """torch.chunk: pieces of ceil(n / chunks) along `axis`, the last one smaller (maybe fewer pieces)."""
    n = x.shape[axis]
    size = -(-n // int(chunks))
    return tuple(lax.slice_in_dim(x, i, min(i + size, n), axis=axis) for i in range(0, n, size))


def split(x, sizes, *, axis: int) -> tuple:
    """torch.split: pieces of `sizes` (an int: equal pieces, the last one smaller) along `axis`."""
    n = x.shape[axis]
    if isinstance(sizes, int):
        sizes = [min(sizes, n - i) for i in range(0, n, sizes)]
    if sum(sizes) != n:
        raise ValueError(f"split sizes {list(sizes)} do not add up to {n}")
    bounds = [0]
    for s in sizes:
        bounds.append(bounds[-1] + int(s))
    return tuple(lax.slice_in_dim(x, a, b, axis=axis) for a, b in zip(bounds[:-1], bounds[1:]))


def cast(x, to=None):
    """A dtype cast: `to` is a dtype (name), an array whose dtype to take, or None (a device move)."""
    if to is None:
        return x
    return x.astype(to.dtype if hasattr(to, "dtype") else to)


def full(shape, value, dtype=None):
    return jnp.full(tuple(shape), value, dtype or jnp.float32)


def squeeze(x, dim=None):
    """torch.squeeze: drops size-1 dims (only `dim`'s, if it is size 1); never an error."""
    if dim is None:
        return jnp.squeeze(x)
    return jnp.squeeze(x, axis=dim) if x.shape[dim] == 1 else x


def _gelu(x, approximate: str = "none"):
    return jax.nn.gelu(x, approximate=approximate == "tanh")


@jax.custom_vjp
def _hardsigmoid(x):
    return jax.nn.relu6(x + 3.0) / 6.0


def _hardsigmoid_fwd(x):
    return _hardsigmoid(x), x


def _hardsigmoid_bwd(x, g):
    """Parity trap: torch's hardsigmoid backward multiplies by 1/6 *rounded to float32* in every
    dtype (torch 2.13, float64: d/dx = 0.1666666716337204), and is 0 at x = ±3; its float64
    gradient is float32-accurate there, and a port that differentiates x/6 exactly is 3e-8 off it."""
    sixth = jnp.asarray(_FLOAT32_SIXTH, g.dtype)
    return (jnp.where((x > -3.0) & (x < 3.0), g * sixth, jnp.zeros_like(g)),)


_FLOAT32_SIXTH = float(np.float32(1.0) / np.float32(6.0))
_hardsigmoid.defvjp(_hardsigmoid_fwd, _hardsigmoid_bwd)


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
    "floordiv": lambda a, b: a // b,
    "mod": lambda a, b: a % b,
    "pow": lambda a, b: a ** b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "clamp": lambda x, lo=None, hi=None: jnp.clip(x, lo, hi),
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
    "chunk": chunk,
    "split": split,
    "cast": cast,
    "dim": lambda x: x.ndim,
    "dtype": lambda x: x.dtype,
    "constant": lambda v: v,
    "full": full,
    "full_like": lambda x, value, dtype=None: jnp.full_like(x, value, dtype),
    "expand_as": lambda x, other: jnp.broadcast_to(x, other.shape),
    "squeeze": squeeze,
    "unsqueeze": lambda x, dim: jnp.expand_dims(x, dim),
    "pad": pad,
    # reductions and joins
    "cat": lambda xs, axis: jnp.concatenate(xs, axis=axis),
    "mean": lambda x, axis, keepdims=False: jnp.mean(x, axis=axis, keepdims=keepdims),
    "sum": lambda x, axis, keepdims=False: jnp.sum(x, axis=axis, keepdims=keepdims),
    "softmax": lambda x, axis: jax.nn.softmax(x, axis=axis),
    "log_softmax": lambda x, axis: jax.nn.log_softmax(x, axis=axis),
}
