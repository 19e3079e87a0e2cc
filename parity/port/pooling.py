"""Pooling on NHWC arrays with torch's exact output sizes and divisors.

Parity traps handled here, by name:
- ceil_mode: torch drops a last window that would start in the right padding
  (`(out-1)*stride >= size + pad`), so ceil output is not simply `ceil(...) + 1`;
- AvgPool2d divisor: with count_include_pad the window is clipped to the *padded* input
  (never counting the extra ceil_mode overhang); without it, to the input itself;
- max pooling pads with -inf (padding never wins), not with zeros.

Init values are numpy scalars: a concrete init lets JAX pick its differentiable max/sum window
reducers (a traced one under jit falls back to a generic reducer with no reverse-mode rule).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax


def out_size(size: int, k: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """torch's pooling output length along one dim."""
    num = size + 2 * pad - dilation * (k - 1) - 1
    if not ceil_mode:
        return num // stride + 1
    out = -(-num // stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _window_pads(size: int, k: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> tuple[int, int]:
    """(low, high) padding for reduce_window so it yields exactly torch's windows."""
    out = out_size(size, k, stride, pad, dilation, ceil_mode)
    high = (out - 1) * stride + dilation * (k - 1) + 1 - size - pad
    return pad, max(high, 0)


def _pair(v) -> tuple[int, int]:
    """An int or a pair as (h, w): a kernel read from a traced size arrives as a plain int."""
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def max_pool2d(x, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
               dilation: tuple[int, int] = (1, 1), ceil_mode: bool = False):
    kernel, stride, padding, dilation = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
    pads = [_window_pads(x.shape[1 + i], kernel[i], stride[i], padding[i], dilation[i], ceil_mode) for i in (0, 1)]
    return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, (1, *kernel, 1), (1, *stride, 1),
                             ((0, 0), pads[0], pads[1], (0, 0)), window_dilation=(1, *dilation, 1))


def _divisors(size: int, k: int, stride: int, pad: int, ceil_mode: bool, count_include_pad: bool) -> np.ndarray:
    n = out_size(size, k, stride, pad, 1, ceil_mode)
    out = np.empty(n, np.float64)
    for o in range(n):
        start = o * stride - pad
        end = min(start + k, size + pad)
        out[o] = (end - start) if count_include_pad else (min(end, size) - max(start, 0))
    return out


def avg_pool2d(x, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
               ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: int | None = None):
    kernel, stride, padding = _pair(kernel), _pair(stride), _pair(padding)
    h, w = x.shape[1], x.shape[2]
    pads = [_window_pads(x.shape[1 + i], kernel[i], stride[i], padding[i], 1, ceil_mode) for i in (0, 1)]
    total = lax.reduce_window(x, np.array(0, x.dtype), lax.add, (1, *kernel, 1), (1, *stride, 1),
                              ((0, 0), pads[0], pads[1], (0, 0)))
    if divisor_override:
        return total / jnp.asarray(divisor_override, x.dtype)
    rows = _divisors(h, kernel[0], stride[0], padding[0], ceil_mode, count_include_pad)
    cols = _divisors(w, kernel[1], stride[1], padding[1], ceil_mode, count_include_pad)
    div = np.outer(rows, cols).astype(np.float32)
    if np.all(div == div.flat[0]):
        return total / jnp.asarray(div.flat[0], x.dtype)
    return total / jnp.asarray(div, x.dtype)[None, :, :, None]


def _bins(size: int, out: int) -> list[tuple[int, int]]:
    return [(i * size // out, math.ceil((i + 1) * size / out)) for i in range(out)]


def adaptive_avg_pool2d(x, output_size: tuple[int | None, int | None]):
    """torch's adaptive bins: [floor(i*H/out), ceil((i+1)*H/out)); a reshape-mean when out divides H."""
    n, h, w, c = x.shape
    oh, ow = (h if output_size[0] is None else output_size[0]), (w if output_size[1] is None else output_size[1])
    if h % oh == 0 and w % ow == 0:
        return x.reshape(n, oh, h // oh, ow, w // ow, c).mean(axis=(2, 4))
    rows = [jnp.stack([x[:, r0:r1, c0:c1, :].mean(axis=(1, 2)) for c0, c1 in _bins(w, ow)], axis=1)
            for r0, r1 in _bins(h, oh)]
    return jnp.stack(rows, axis=1)
