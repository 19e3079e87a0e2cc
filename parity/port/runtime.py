"""The torch-exact building blocks of a ported model: `parity.port.emit` copies the ones a model uses
into its `model.py`, so the file runs with numpy, jax, flax and safetensors alone.

Self-contained on purpose: this file imports nothing but the standard library, numpy, jax and flax,
and each definition refers only to names defined here or to the twin's conv and BatchNorm kernels
(`flax_cnn.model.ops`, `.batch_norm`: jax-only, copied the same way), so any subset with its
dependencies is a working module. Arrays are NHWC where torch's are NCHW (4-D values); everything else is in
torch's own dim order. Parity traps are named where they are handled.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from flax_cnn.model.batch_norm import batch_norm_train  # the twin's BatchNorm backward: copied the same way
from flax_cnn.model.ops import conv2d  # the twin's conv, kernel chosen per backend: emit copies its source into model.py


# --- layout -------------------------------------------------------------------------------------

def to_nhwc(x):
    return jnp.transpose(x, (0, 2, 3, 1))


def to_nchw(x):
    return jnp.transpose(x, (0, 3, 1, 2))


def torch_size(x, dim=None, *, nhwc=False):
    """`x.size(dim)` as torch sees it: (N, C, H, W) for an array stored NHWC."""
    s = tuple(x.shape)
    s = (s[0], s[3], s[1], s[2]) if nhwc else s
    return s if dim is None else s[dim]


def fold_in(key, i):
    """The key of random site `i`: one fold of the call's key each (None stays None: eval mode)."""
    return None if key is None else jax.random.fold_in(key, i)


# --- shape ops (torch semantics, torch dim order) ------------------------------------------------

def flatten(x, start_dim=0, end_dim=-1):
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


def squeeze(x, dim=None):
    """torch.squeeze: drops size-1 dims (only `dim`'s, if it is size 1); never an error."""
    if dim is None:
        return jnp.squeeze(x)
    return jnp.squeeze(x, axis=dim) if x.shape[dim] == 1 else x


def chunk(x, chunks, *, axis):
    """torch.chunk: pieces of ceil(n / chunks) along `axis`, the last one smaller (maybe fewer pieces)."""
    n = x.shape[axis]
    step = -(-n // int(chunks))
    return tuple(lax.slice_in_dim(x, i, min(i + step, n), axis=axis) for i in range(0, n, step))


def split(x, sizes, *, axis):
    """torch.split: pieces of `sizes` (an int: equal pieces, the last one smaller) along `axis`."""
    n = x.shape[axis]
    if isinstance(sizes, int):
        sizes = [min(sizes, n - i) for i in range(0, n, sizes)]
    bounds = np.cumsum([0, *[int(s) for s in sizes]])
    return tuple(lax.slice_in_dim(x, int(a), int(b), axis=axis) for a, b in zip(bounds[:-1], bounds[1:]))


def cast(x, to=None):
    """A dtype cast: `to` is a dtype (name), an array whose dtype to take, or None (a device move)."""
    if to is None:
        return x
    return x.astype(to.dtype if hasattr(to, "dtype") else to)


def pad(x, widths, value=0.0):
    """Constant padding per axis; negative widths crop, as in torch's F.pad."""
    return lax.pad(x, jnp.asarray(value, x.dtype), [(lo, hi, 0) for lo, hi in widths])


def pad_mode(x, widths, mode):
    """F.pad's reflect / replicate / circular per axis (torch's names; numpy's 'reflect' is torch's
    reflect: the edge is not repeated; torch's replicate is numpy's 'edge', circular is 'wrap')."""
    np_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    return jnp.pad(x, widths, mode=np_mode)


def pixel_shuffle(x, r):
    """NHWC pixel shuffle with torch's channel order: input channel c*r*r + i*r + j goes to (h*r+i, w*r+j, c)."""
    n, h, w, c = x.shape
    oc = c // (r * r)
    x = x.reshape(n, h, w, oc, r, r)
    return x.transpose(0, 1, 4, 2, 5, 3).reshape(n, h * r, w * r, oc)


def pixel_unshuffle(x, r):
    """The inverse of `pixel_shuffle`: output channel c*r*r + i*r + j holds (h*r+i, w*r+j, c)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // r, r, w // r, r, c)
    return x.transpose(0, 1, 3, 5, 2, 4).reshape(n, h // r, w // r, c * r * r)


# --- elementwise (torch definitions) -------------------------------------------------------------

def gelu(x, approximate="none"):
    """torch's GELU: exact erf unless approximate='tanh'."""
    return jax.nn.gelu(x, approximate=approximate == "tanh")


def leaky_relu(x, negative_slope=0.01):
    return jnp.where(x > 0, x, x * negative_slope)


def elu(x, alpha=1.0):
    return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0)))


def softplus(x, beta=1.0, threshold=20.0):
    """torch's softplus: log1p(exp(beta x)) / beta, linear where beta x > threshold."""
    bx = x * beta
    return jnp.where(bx > threshold, x, jnp.log1p(jnp.exp(jnp.minimum(bx, threshold))) / beta)


def mish(x):
    return x * jnp.tanh(softplus(x))


def prelu(x, weight, *, nhwc):
    """PReLU with one slope or one per channel (torch's dim 1: the last axis of an NHWC array)."""
    w = weight.astype(x.dtype)
    if w.size > 1 and x.ndim >= 2:
        w = w.reshape((1,) * (x.ndim - 1) + (-1,)) if nhwc else w.reshape((1, -1) + (1,) * (x.ndim - 2))
    return jnp.where(x >= 0, x, w * x)


def hardtanh(x, min_val=-1.0, max_val=1.0):
    return jnp.clip(x, min_val, max_val)


_FLOAT32_SIXTH = float(np.float32(1.0) / np.float32(6.0))


@jax.custom_vjp
def hardsigmoid(x):
    return jax.nn.relu6(x + 3.0) / 6.0


def _hardsigmoid_fwd(x):
    return hardsigmoid(x), x


def _hardsigmoid_bwd(x, g):
    """Parity trap: torch's hardsigmoid backward multiplies by 1/6 *rounded to float32* in every
    dtype (torch 2.13, float64: d/dx = 0.1666666716337204), and is 0 at x = ±3."""
    sixth = jnp.asarray(_FLOAT32_SIXTH, g.dtype)
    return (jnp.where((x > -3.0) & (x < 3.0), g * sixth, jnp.zeros_like(g)),)


hardsigmoid.defvjp(_hardsigmoid_fwd, _hardsigmoid_bwd)


def add(a, b, alpha=1):
    return a + b * alpha


def sub(a, b, alpha=1):
    return a - b * alpha


def where(cond, a, b):
    return jnp.where(cond, a, b)


# --- reductions ----------------------------------------------------------------------------------

def var(x, axis=None, correction=1, keepdims=False):
    """torch.var / std's variance: divides by n - correction (unbiased by default)."""
    n = x.size if axis is None else math.prod(x.shape[a] for a in ((axis,) if isinstance(axis, int) else axis))
    mean = jnp.mean(x, axis=axis, keepdims=True)
    return jnp.sum(jnp.square(x - mean), axis=axis, keepdims=keepdims) / max(n - correction, 0)


def std(x, axis=None, correction=1, keepdims=False):
    return jnp.sqrt(var(x, axis, correction, keepdims))


def amax(x, axis=None, keepdims=False):
    return jnp.max(x, axis=axis, keepdims=keepdims)


def max_along(x, axis, keepdims=False):
    """torch.max(x, dim): (values, indices)."""
    return jnp.max(x, axis=axis, keepdims=keepdims), jnp.argmax(x, axis=axis, keepdims=keepdims)


def min_along(x, axis, keepdims=False):
    return jnp.min(x, axis=axis, keepdims=keepdims), jnp.argmin(x, axis=axis, keepdims=keepdims)


# --- pooling (torch windows, NHWC) ---------------------------------------------------------------

def _pair(v):
    """An int or a pair as (h, w): a kernel read from a traced size arrives as a plain int."""
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def pool_out_size(size, k, stride, pad, dilation, ceil_mode):
    """torch's pooling output length along one dim (ceil_mode's last window must start inside)."""
    num = size + 2 * pad - dilation * (k - 1) - 1
    if not ceil_mode:
        return num // stride + 1
    out = -(-num // stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _window_pads(size, k, stride, pad, dilation, ceil_mode):
    """(low, high) padding for reduce_window so it yields exactly torch's windows."""
    out = pool_out_size(size, k, stride, pad, dilation, ceil_mode)
    high = (out - 1) * stride + dilation * (k - 1) + 1 - size - pad
    return pad, max(high, 0)


def max_pool2d(x, kernel, stride, padding, dilation=(1, 1), ceil_mode=False):
    """torch's max pool: -inf padding, torch's window count."""
    kernel, stride, padding, dilation = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
    pads = [_window_pads(x.shape[1 + i], kernel[i], stride[i], padding[i], dilation[i], ceil_mode) for i in (0, 1)]
    return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, (1, *kernel, 1), (1, *stride, 1),
                             ((0, 0), pads[0], pads[1], (0, 0)), window_dilation=(1, *dilation, 1))


def _divisors(size, k, stride, pad, ceil_mode, count_include_pad):
    n = pool_out_size(size, k, stride, pad, 1, ceil_mode)
    out = np.empty(n, np.float64)
    for o in range(n):
        start = o * stride - pad
        end = min(start + k, size + pad)
        out[o] = (end - start) if count_include_pad else (min(end, size) - max(start, 0))
    return out


def avg_pool2d(x, kernel, stride, padding, ceil_mode=False, count_include_pad=True, divisor_override=None):
    """torch's average pool: its divisors at the borders (count_include_pad, ceil_mode's clipped window)."""
    kernel, stride, padding = _pair(kernel), _pair(stride), _pair(padding)
    pads = [_window_pads(x.shape[1 + i], kernel[i], stride[i], padding[i], 1, ceil_mode) for i in (0, 1)]
    total = lax.reduce_window(x, np.array(0, x.dtype), lax.add, (1, *kernel, 1), (1, *stride, 1),
                              ((0, 0), pads[0], pads[1], (0, 0)))
    if divisor_override:
        return total / jnp.asarray(divisor_override, x.dtype)
    rows = _divisors(x.shape[1], kernel[0], stride[0], padding[0], ceil_mode, count_include_pad)
    cols = _divisors(x.shape[2], kernel[1], stride[1], padding[1], ceil_mode, count_include_pad)
    div = np.outer(rows, cols).astype(np.float32)
    if np.all(div == div.flat[0]):
        return total / jnp.asarray(div.flat[0], x.dtype)
    return total / jnp.asarray(div, x.dtype)[None, :, :, None]


def _bins(size, out):
    return [(i * size // out, math.ceil((i + 1) * size / out)) for i in range(out)]


def _adaptive(x, output_size, reduce):
    n, h, w, c = x.shape
    oh = h if output_size[0] is None else output_size[0]
    ow = w if output_size[1] is None else output_size[1]
    if h % oh == 0 and w % ow == 0:
        return reduce(x.reshape(n, oh, h // oh, ow, w // ow, c), axis=(2, 4))
    rows = [jnp.stack([reduce(x[:, r0:r1, c0:c1, :], axis=(1, 2)) for c0, c1 in _bins(w, ow)], axis=1)
            for r0, r1 in _bins(h, oh)]
    return jnp.stack(rows, axis=1)


def adaptive_avg_pool2d(x, output_size):
    """torch's adaptive bins: [floor(i*H/out), ceil((i+1)*H/out)); a reshape-mean when out divides H."""
    return _adaptive(x, _size2(output_size), jnp.mean)


def adaptive_max_pool2d(x, output_size):
    return _adaptive(x, _size2(output_size), jnp.max)


def _size2(size):
    return (size, size) if isinstance(size, int) or size is None else (size[0], size[1])


# --- resampling (torch's index rules) ------------------------------------------------------------

def _source_index(out, size, scale, align_corners):
    """Source coordinate of each output pixel along one axis, as F.interpolate computes it.

    Parity trap: align_corners=False uses the half-pixel rule (o + 0.5) / s - 0.5 clamped at 0, with
    s the given scale_factor when there is one (torch uses 1/scale_factor, not in/out); True maps
    the corners: o * (in - 1) / (out - 1)."""
    o = np.arange(out, dtype=np.float64)
    if align_corners:
        return o * ((size - 1) / (out - 1)) if out > 1 else np.zeros(out)
    ratio = 1.0 / scale if scale else size / out
    return np.maximum((o + 0.5) * ratio - 0.5, 0.0)


def _linear_weights(out, size, scale, align_corners):
    src = _source_index(out, size, scale, align_corners)
    lo = np.minimum(np.floor(src).astype(np.int64), size - 1)
    hi = np.minimum(lo + 1, size - 1)
    frac = src - lo
    return lo, hi, frac


def upsample_bilinear(x, out_hw, scale=(None, None), align_corners=False):
    """F.interpolate(mode='bilinear', antialias=False) on NHWC: torch's source indices and weights, so
    it agrees at the borders and when downsampling (jax.image.resize does neither the same way)."""
    for axis, (o, s) in zip((1, 2), zip(out_hw, scale)):
        lo, hi, frac = _linear_weights(o, x.shape[axis], s, align_corners)
        x = _lerp(jnp.take(x, lo, axis=axis), jnp.take(x, hi, axis=axis), jnp.asarray(frac, x.dtype), axis)
    return x


def _lerp(a, b, f, axis):
    shape = [1, 1, 1, 1]
    shape[axis] = -1
    f = f.reshape(shape)
    return a * (1 - f) + b * f


def upsample_nearest(x, out_hw, scale=(None, None), exact=False):
    """F.interpolate(mode='nearest'): source floor(o * in / out) (or floor(o / scale) with a scale);
    'nearest-exact' rounds half-pixel centres instead."""
    for axis, (o, s) in zip((1, 2), zip(out_hw, scale)):
        size = x.shape[axis]
        ratio = 1.0 / s if s else size / o
        idx = np.arange(o, dtype=np.float32)  # torch computes the index in float32
        src = np.floor((idx + np.float32(0.5)) * np.float32(ratio)) if exact else np.floor(idx * np.float32(ratio))
        x = jnp.take(x, np.minimum(src.astype(np.int64), size - 1), axis=axis)
    return x


# --- functional layers (weights computed in forward) ---------------------------------------------

def layer_norm(x, n_dims, weight=None, bias=None, eps=1e-5):
    """F.layer_norm over the last `n_dims` dims (torch's order): biased variance, eps inside the root."""
    axes = tuple(range(-n_dims, 0))
    mean = x.mean(axis=axes, keepdims=True)
    y = (x - mean) * lax.rsqrt(jnp.square(x - mean).mean(axis=axes, keepdims=True) + eps)
    y = y if weight is None else y * weight.astype(y.dtype)
    return y if bias is None else y + bias.astype(y.dtype)


def group_norm(x, groups, weight=None, bias=None, eps=1e-5):
    """F.group_norm on NHWC: channel c is in group c // (C / groups), as torch splits dim 1."""
    n, h, w, c = x.shape
    g = x.reshape(n, h, w, groups, c // groups)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = jnp.square(g - mean).mean(axis=(1, 2, 4), keepdims=True)
    y = ((g - mean) * lax.rsqrt(var + eps)).reshape(n, h, w, c)
    y = y if weight is None else y * weight.astype(y.dtype)
    return y if bias is None else y + bias.astype(y.dtype)


def linear(x, weight, bias=None):
    """F.linear: torch's (out, in) weight as the program holds it."""
    y = x @ weight.astype(x.dtype).T
    return y if bias is None else y + bias.astype(y.dtype)


# --- layers -------------------------------------------------------------------------------------

class Buffer(nnx.Variable):
    """A torch buffer read directly in forward: state, neither trained nor a BatchNorm statistic."""


class Unused(nnx.Variable):
    """A tensor of a torch module the forward never calls: kept so the weights round-trip, never read."""


class Scope(nnx.Module):
    """A torch container (Sequential, a block): its children under their torch names."""

    def __init__(self, **children):
        for name, child in children.items():
            setattr(self, name, child)

    def __getitem__(self, name):
        return getattr(self, str(name))


class Conv2d(nnx.Module):
    """torch Conv2d on NHWC: kernel HWIO (torch's OIHW transposed (2, 3, 1, 0)), explicit per-side
    padding (parity trap: XLA's 'SAME' pads a stride-2 conv (0, 1), torch pads both sides)."""

    def __init__(self, in_ch, out_ch, kernel_size, *, stride=(1, 1), dilation=(1, 1), padding=((0, 0), (0, 0)),
                 groups=1, bias=True, padding_mode="zeros"):
        self.kernel = nnx.Param(jnp.zeros((*kernel_size, in_ch // groups, out_ch), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_ch,), jnp.float32)) if bias else None
        self.stride, self.dilation, self.padding, self.groups = stride, dilation, padding, groups
        self.padding_mode = padding_mode

    def __call__(self, x):
        pads = self.padding
        if self.padding_mode != "zeros":  # reflect / replicate / circular: pad first, then a valid conv
            x = pad_mode(x, ((0, 0), pads[0], pads[1], (0, 0)), self.padding_mode)
            pads = ((0, 0), (0, 0))
        y = hwio_conv(x, self.kernel.get_value().astype(x.dtype), self.stride, self.dilation, pads, self.groups)
        return y if self.bias is None else y + self.bias.get_value().astype(y.dtype)


def hwio_conv(x, w, stride, dilation, pads, groups):
    """A conv of NHWC `x` with an HWIO kernel and per-side `pads`. A square kernel with one stride, one
    dilation and one padding on every side goes through the twin's `conv2d`, so a port runs the kernels
    measured for the twin: on XLA:CPU a depthwise conv as shifted multiply-adds (XLA's `feature_group_count`
    conv made a ported MobileNetV2's step 7.7x slower) and dense convs with the stored-input and col2im
    backwards; elsewhere, or with $FLAX_CNN_OPS=xla, and for every other conv, XLA's own."""
    if (w.shape[0] == w.shape[1] and stride[0] == stride[1] and dilation[0] == dilation[1]
            and len({p for side in pads for p in side}) == 1):
        return conv2d(x, w, stride=stride[0], dilation=dilation[0], padding=pads[0][0], groups=groups)
    return lax.conv_general_dilated(x, w, stride, pads, rhs_dilation=dilation,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def conv2d_oihw(x, kernel, bias=None, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    """F.conv2d with a kernel computed in forward (torch's OIHW value, as the program holds it)."""
    y = hwio_conv(x, jnp.transpose(kernel, (2, 3, 1, 0)).astype(x.dtype), _pair(stride), _pair(dilation),
                  padding, groups)
    return y if bias is None else y + bias.astype(y.dtype)


class ConvTranspose2d(nnx.Module):
    """torch ConvTranspose2d on NHWC, as the gradient of a conv: the input dilated by the stride, padded
    by dilation*(k-1) - padding (plus output_padding at the end), convolved with the kernel flipped.

    Parity trap: torch's weight is (in, out/groups, kh, kw); it is stored here as (kh, kw, in, out/groups)
    and regrouped to HWIO (kh, kw, in/groups, out) per call."""

    def __init__(self, in_ch, out_ch, kernel_size, *, stride=(1, 1), padding=(0, 0), output_padding=(0, 0),
                 dilation=(1, 1), groups=1, bias=True):
        self.kernel = nnx.Param(jnp.zeros((*kernel_size, in_ch, out_ch // groups), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_ch,), jnp.float32)) if bias else None
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.dilation, self.groups = dilation, groups

    def __call__(self, x):
        w = self.kernel.get_value().astype(x.dtype)
        kh, kw, cin, cpg = w.shape
        g = self.groups
        w = w.reshape(kh, kw, g, cin // g, cpg).transpose(0, 1, 3, 2, 4).reshape(kh, kw, cin // g, g * cpg)
        w = w[::-1, ::-1]
        pads = [(d * (k - 1) - p, d * (k - 1) - p + op) for k, p, op, d in
                zip((kh, kw), self.padding, self.output_padding, self.dilation)]
        y = lax.conv_general_dilated(x, w, (1, 1), pads, lhs_dilation=self.stride, rhs_dilation=self.dilation,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=g)
        return y if self.bias is None else y + self.bias.get_value().astype(y.dtype)


class BatchNorm2d(nnx.Module):
    """torch BatchNorm2d on NHWC. Parity traps: momentum is torch's (weight of the new batch: Flax's
    0.9 is torch's 0.1); the running variance takes the *unbiased* batch variance, the normalisation
    the biased one; the variance is two-pass; statistics in at least float32. Without running
    statistics (track_running_stats=False) both modes normalise with the batch's. Batch statistics go
    through the twin's closed-form backward (`batch_norm_train`): a ported MobileNetV2's train step
    0.81x of autodiff's on one core (docs/performance.md)."""

    def __init__(self, num_features, *, momentum=0.1, eps=1e-5, affine=True, track_running_stats=True):
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32)) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32)) if affine else None
        if track_running_stats:
            self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
            self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
            self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))
        self.track_running_stats = track_running_stats
        self.momentum, self.eps = momentum, eps
        self.use_running_average = False

    def __call__(self, x):
        dtype = x.dtype
        x = x.astype(jnp.promote_types(dtype, jnp.float32))
        if self.use_running_average and self.track_running_stats:
            y = (x - self.mean.get_value()) * lax.rsqrt(self.var.get_value() + self.eps)
            if self.scale is not None:
                y = y * self.scale.get_value() + self.bias.get_value()
            return y.astype(dtype)
        c = x.shape[-1]
        scale, bias = ((jnp.ones(c, jnp.float32), jnp.zeros(c, jnp.float32)) if self.scale is None
                       else (self.scale.get_value(), self.bias.get_value()))
        y, mean, var = batch_norm_train(x, scale, bias, self.eps)
        if self.track_running_stats:
            n = x.shape[0] * x.shape[1] * x.shape[2]
            m = self.momentum
            self.mean.set_value((1.0 - m) * self.mean.get_value() + m * mean)
            self.var.set_value((1.0 - m) * self.var.get_value() + m * var * (n / max(n - 1, 1)))
            self.num_batches_tracked.set_value(self.num_batches_tracked.get_value() + 1)
        return y.astype(dtype)


def _value(v):
    return None if v is None else v.get_value()


def _affine(y, scale, bias, shape):
    if scale is not None:
        y = y * scale.get_value().astype(y.dtype).reshape(shape)
    if bias is not None:
        y = y + bias.get_value().astype(y.dtype).reshape(shape)
    return y


class GroupNorm(nnx.Module):
    """torch GroupNorm on NHWC: channel c is in group c // (C / groups), as torch splits dim 1; the
    variance is biased, eps inside the square root."""

    def __init__(self, num_groups, num_channels, *, eps=1e-5, affine=True):
        self.scale = nnx.Param(jnp.ones((num_channels,), jnp.float32)) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_channels,), jnp.float32)) if affine else None
        self.num_groups, self.eps = num_groups, eps

    def __call__(self, x):
        return group_norm(x, self.num_groups, _value(self.scale), _value(self.bias), self.eps)


class InstanceNorm2d(nnx.Module):
    """torch InstanceNorm2d on NHWC (biased variance per sample and channel); running statistics are
    refused by the port, so train and eval modes normalise alike, as torch's default does."""

    def __init__(self, num_features, *, eps=1e-5, affine=False):
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32)) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32)) if affine else None
        self.eps = eps

    def __call__(self, x):
        mean = x.mean(axis=(1, 2), keepdims=True)
        var = jnp.square(x - mean).mean(axis=(1, 2), keepdims=True)
        return _affine((x - mean) * lax.rsqrt(var + self.eps), self.scale, self.bias, (x.shape[-1],))


class LayerNorm(nnx.Module):
    """torch LayerNorm over the last len(normalized_shape) dims, in torch's dim order (the port hands it
    a torch-layout array): biased variance, eps inside the square root."""

    def __init__(self, normalized_shape, *, eps=1e-5, affine=True, bias=True):
        self.scale = nnx.Param(jnp.ones(normalized_shape, jnp.float32)) if affine else None
        self.bias = nnx.Param(jnp.zeros(normalized_shape, jnp.float32)) if affine and bias else None
        self.axes, self.eps = tuple(range(-len(normalized_shape), 0)), eps

    def __call__(self, x):
        return layer_norm(x, len(self.axes), _value(self.scale), _value(self.bias), self.eps)


class Linear(nnx.Module):
    """torch Linear: kernel (in, out) is torch's weight (out, in) transposed."""

    def __init__(self, in_features, out_features, *, bias=True):
        self.kernel = nnx.Param(jnp.zeros((in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if bias else None

    def __call__(self, x):
        y = x @ self.kernel.get_value().astype(x.dtype)
        return y if self.bias is None else y + self.bias.get_value().astype(y.dtype)


class PReLU(nnx.Module):
    """torch PReLU: one slope, or one per channel (the last axis of an NHWC input)."""

    def __init__(self, num_parameters=1, *, nhwc=True):
        self.weight = nnx.Param(jnp.full((num_parameters,), 0.25, jnp.float32))
        self.nhwc = nhwc

    def __call__(self, x):
        return prelu(x, self.weight.get_value(), nhwc=self.nhwc)


class Dropout(nnx.Module):
    """Inverted dropout with an explicit key (no hidden RNG state: a resumed run draws the same masks).
    `channels`: Dropout2d, one draw per (sample, channel) of an NHWC input."""

    def __init__(self, rate, *, channels=False):
        self.rate, self.channels, self.deterministic = rate, channels, False

    def __call__(self, x, key=None):
        return dropout(x, self.rate, self.deterministic, key, channels=self.channels)


def dropout(x, rate, deterministic, key, *, channels=False):
    if deterministic or rate == 0.0:
        return x
    if key is None:
        raise ValueError("dropout in train mode needs a PRNG key: call model(x, key=...)")
    shape = (x.shape[0], 1, 1, x.shape[3]) if channels else x.shape
    sharding = getattr(jax.typeof(x), "sharding", None)  # multi-process meshes: the mask sharded like x
    explicit = sharding is not None and getattr(sharding, "mesh", None) is not None and not sharding.mesh.empty
    keep = jax.random.bernoulli(key, 1.0 - rate, shape, out_sharding=sharding if explicit and not channels else None)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def random_draw(kind, shape, dtype, key, p=None):
    """torch.rand / randn / bernoulli at one random site, from that site's key."""
    if key is None:
        raise ValueError(f"a random op ({kind}) needs a PRNG key: call model(x, key=...)")
    if kind == "uniform":
        return jax.random.uniform(key, shape, dtype)
    if kind == "normal":
        return jax.random.normal(key, shape, dtype)
    return jax.random.bernoulli(key, p, shape).astype(dtype)


def replayed(model, kind, site, like, rate, nhwc):
    """A parity check's value for random site `site`: torch's own draw (NCHW), in `like`'s layout;
    for dropout, `like` is the input and the result is it times the replayed mask scale."""
    values = model.port_random(kind, site, torch_size(like, nhwc=nhwc), rate)
    values = values.transpose(0, 2, 3, 1) if nhwc and values.ndim == 4 else values
    values = jnp.asarray(values, like.dtype)
    return like * values if kind == "dropout" else values


class Activation(nnx.Module):
    """A torch activation module: `fn` from this file with the module's options."""

    def __init__(self, fn, **options):
        self.fn, self.options = fn, tuple(sorted(options.items()))

    def __call__(self, x):
        return self.fn(x, **dict(self.options))


class MaxPool2d(nnx.Module):
    def __init__(self, kernel, stride, padding, dilation=(1, 1), ceil_mode=False):
        self.kernel, self.stride, self.pad, self.dilation, self.ceil_mode = kernel, stride, padding, dilation, ceil_mode

    def __call__(self, x):
        return max_pool2d(x, self.kernel, self.stride, self.pad, self.dilation, self.ceil_mode)


class AvgPool2d(nnx.Module):
    def __init__(self, kernel, stride, padding, ceil_mode=False, count_include_pad=True, divisor_override=None):
        self.kernel, self.stride, self.pad = kernel, stride, padding
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def __call__(self, x):
        return avg_pool2d(x, self.kernel, self.stride, self.pad, self.ceil_mode, self.count_include_pad,
                          self.divisor_override)


class AdaptiveAvgPool2d(nnx.Module):
    def __init__(self, output_size):
        self.output_size = output_size

    def __call__(self, x):
        return adaptive_avg_pool2d(x, self.output_size)


class AdaptiveMaxPool2d(nnx.Module):
    def __init__(self, output_size):
        self.output_size = output_size

    def __call__(self, x):
        return adaptive_max_pool2d(x, self.output_size)


class Flatten(nnx.Module):
    """torch Flatten on a torch-layout (NCHW) input: the port puts the transpose in front of it."""

    def __init__(self, start_dim=1, end_dim=-1):
        self.start_dim, self.end_dim = start_dim, end_dim

    def __call__(self, x):
        return flatten(x, self.start_dim, self.end_dim)


class Identity(nnx.Module):
    def __call__(self, x):
        return x


# --- weights in torch naming ---------------------------------------------------------------------

TO_FLAX = {"conv": (2, 3, 1, 0), "conv_transpose": (2, 3, 0, 1), "dense": (1, 0)}
"""Axis order of each layout change, torch -> Flax (OIHW -> HWIO, (in, out/g, kh, kw) -> (kh, kw, in, out/g),
(out, in) -> (in, out)); the other layouts are copied as they are."""


def to_flax_tensor(value, layout):
    """A torch state_dict tensor in the layout of its Flax variable."""
    return np.transpose(value, TO_FLAX[layout]) if layout in TO_FLAX else value


def to_torch_tensor(value, layout):
    """A Flax variable in torch's layout: the inverse permutation of `to_flax_tensor`'s."""
    return np.transpose(value, np.argsort(TO_FLAX[layout])) if layout in TO_FLAX else value


def variable_at(model, path):
    node = model
    for part in path:
        node = getattr(node, part)
    return node


def load_tensors(model, tensors, key_map):
    """Every torch-named tensor into its variable, each key and shape checked (nanoGPT-style)."""
    missing = [k for k, _, _, _ in key_map if k not in tensors]
    if missing:
        raise KeyError(f"{len(missing)} tensor(s) missing from the weights, first {missing[0]!r}")
    for torch_key, path, shape, layout in key_map:
        value = np.asarray(tensors[torch_key])
        assert tuple(value.shape) == tuple(shape), f"{torch_key}: shape {value.shape}, expected {shape}"
        var = variable_at(model, path)
        new = to_flax_tensor(value, layout)
        old = var.get_value()
        var.set_value(jnp.asarray(new, old.dtype if layout != "count" else jnp.int32).reshape(old.shape))
    return model


def state_tensors(model, key_map):
    """The model's variables as torch-named numpy tensors (the original's load_state_dict reads them)."""
    out = {}
    for torch_key, path, shape, layout in key_map:
        value = np.asarray(variable_at(model, path).get_value())
        if layout == "count":
            value = value.astype(np.int64)
        out[torch_key] = np.array(to_torch_tensor(value, layout).reshape(shape), order="C")
    return out


# --- Core ATen lowering (parity.port.aten): modules with no rule, op by op in torch's dim order ----

def aten_dtype(name):
    """A torch dtype name as a JAX dtype; 'float' is the model's float (float32, float64 under x64)."""
    if name is None:
        return None
    return jax.dtypes.canonicalize_dtype(jnp.float64 if name == "float" else jnp.dtype(name))


def aten_cast(x, dtype=None):
    """aten._to_copy: a cast to `dtype`; a float-to-float cast keeps the model's float."""
    if dtype is None or (dtype == "float" and jnp.issubdtype(x.dtype, jnp.floating)):
        return x
    return x.astype(aten_dtype(dtype))


def aten_full(size, value, dtype):
    """aten.full / scalar_tensor / empty (zeros): a constant tensor of torch's size."""
    return jnp.full(tuple(size), value, aten_dtype(dtype))


def aten_full_like(x, value, dtype=None):
    """aten.full_like / fill: `x`'s shape, its dtype unless given."""
    return jnp.full(x.shape, value, x.dtype if dtype is None else aten_dtype(dtype))


def aten_arange(start, end, step, dtype):
    """aten.arange.start_step: torch's length ceil((end - start) / step)."""
    n = max(math.ceil((end - start) / step), 0)
    return (start + jnp.arange(n, dtype=aten_dtype(dtype)) * step).astype(aten_dtype(dtype))


def aten_constant(values, dtype):
    """A small constant tensor the lowering captured (nested tuples of numbers)."""
    return jnp.asarray(np.array(values), aten_dtype(dtype))


def aten_div_mode(a, b, mode=None):
    """aten.div with rounding_mode None (true division), 'trunc' or 'floor'."""
    if mode is None:
        return a / b
    if mode == "floor":
        return jnp.floor_divide(a, b)
    q = a / b
    return jnp.trunc(q).astype(q.dtype) if jnp.issubdtype(jnp.result_type(a, b), jnp.floating) else \
        (jnp.sign(a) * jnp.sign(b) * (jnp.abs(a) // jnp.abs(b))).astype(jnp.result_type(a, b))


def aten_elu(x, alpha=1.0, scale=1.0, input_scale=1.0):
    """aten.elu (SELU and CELU lower to it): scale * x above 0, scale * alpha * (exp(x * input_scale) - 1) else."""
    return jnp.where(x > 0, x * scale, jnp.expm1(jnp.minimum(x, 0) * input_scale) * (alpha * scale))


def aten_axes(dim, ndim):
    """A torch dim list as axes: None or [] is every axis."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(d % max(ndim, 1) for d in dims) if dims else None


def aten_reduce(fn, x, dim=None, keepdim=False, dtype=None):
    """sum / mean / amax / amin / any / prod over torch dims ([] or None: all), torch's keepdim."""
    f = {"sum": jnp.sum, "mean": jnp.mean, "amax": jnp.max, "amin": jnp.min, "any": jnp.any, "prod": jnp.prod}[fn]
    y = f(x, axis=aten_axes(dim, x.ndim), keepdims=keepdim)
    return y if dtype is None else aten_cast(y, dtype)


def aten_arg(fn, x, dim=None, keepdim=False):
    """argmax / argmin: of the flattened tensor when dim is None (keepdim then keeps every dim as 1)."""
    f = jnp.argmax if fn == "argmax" else jnp.argmin
    if dim is None:
        y = f(x.reshape(-1))
        return y.reshape((1,) * x.ndim) if keepdim else y
    return f(x, axis=dim, keepdims=keepdim)


def aten_var(x, dim=None, correction=1, keepdim=False):
    """aten.var.correction: divides by n - correction over torch dims."""
    axes = aten_axes(dim, x.ndim)
    n = x.size if axes is None else math.prod(x.shape[a] for a in axes)
    mean = jnp.mean(x, axis=axes, keepdims=True)
    return jnp.sum(jnp.square(x - mean), axis=axes, keepdims=keepdim) / max(n - correction, 0)


def aten_vector_norm(x, ord=2, dim=None, keepdim=False):
    """aten.linalg_vector_norm over torch dims (inf, -inf, 0 and p norms)."""
    axes, a = aten_axes(dim, x.ndim), jnp.abs(x)
    if ord == float("inf"):
        return jnp.max(a, axis=axes, keepdims=keepdim)
    if ord == float("-inf"):
        return jnp.min(a, axis=axes, keepdims=keepdim)
    if ord == 0:
        return jnp.sum((a != 0).astype(x.dtype), axis=axes, keepdims=keepdim)
    if ord == 2:
        return jnp.sqrt(jnp.sum(a * a, axis=axes, keepdims=keepdim))
    return jnp.sum(a ** ord, axis=axes, keepdims=keepdim) ** (1.0 / ord)


def aten_sort(x, dim=-1, descending=False):
    """aten.sort: (values, indices), stable."""
    idx = jnp.argsort(x, axis=dim, stable=True, descending=descending)
    return jnp.take_along_axis(x, idx, axis=dim), idx


def aten_topk(x, k, dim=-1, largest=True, sorted=True):
    """aten.topk: the k largest (smallest) along dim, sorted, with their indices."""
    values, idx = aten_sort(x, dim, descending=largest)
    return lax.slice_in_dim(values, 0, k, axis=dim % x.ndim), lax.slice_in_dim(idx, 0, k, axis=dim % x.ndim)


def aten_view(x, size):
    """aten.view / reshape in torch's (row-major) order; -1 is inferred."""
    return jnp.reshape(x, tuple(size))


def aten_expand(x, size):
    """aten.expand: -1 keeps a dim, new dims go in front."""
    lead = len(size) - x.ndim
    return jnp.broadcast_to(x, tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(size)))


def aten_squeeze(x, dims):
    """aten.squeeze.dim / dims: drops the listed dims that have size 1."""
    axes = tuple(d % x.ndim for d in ((dims,) if isinstance(dims, int) else dims) if x.ndim and x.shape[d] == 1)
    return jnp.squeeze(x, axis=axes) if axes else x


def aten_index_of(ndim, dim, index):
    """The indexing tuple that takes `index` (an int or a slice) along `dim`."""
    return (slice(None),) * (dim % ndim) + (index,)


def aten_slice(x, dim=0, start=None, end=None, step=1):
    """aten.slice.Tensor: Python's clamped slice along dim."""
    return x[aten_index_of(x.ndim, dim, slice(start, end, step))]


def aten_select(x, dim, index):
    """aten.select.int: one index along dim, the dim dropped."""
    return x[aten_index_of(x.ndim, dim, index)]


def aten_slice_scatter(x, src, dim=0, start=None, end=None, step=1):
    """aten.slice_scatter: x with the slice replaced by src."""
    return x.at[aten_index_of(x.ndim, dim, slice(start, end, step))].set(src.astype(x.dtype))


def aten_select_scatter(x, src, dim, index):
    """aten.select_scatter: x with one index along dim replaced by src."""
    return x.at[aten_index_of(x.ndim, dim, index)].set(src.astype(x.dtype))


def aten_index(x, indices):
    """aten.index.Tensor: numpy's advanced indexing (None: the whole dim), as torch defines it."""
    return x[tuple(slice(None) if i is None else i for i in indices)]


def aten_index_put(x, indices, values, accumulate=False):
    """aten.index_put: set (or add, accumulate=True) values at the advanced index."""
    at = x.at[tuple(slice(None) if i is None else i for i in indices)]
    return at.add(values.astype(x.dtype)) if accumulate else at.set(values.astype(x.dtype))


def aten_scatter_index(index, dim):
    """The full indexing tuple of gather / scatter: `index` along dim, its own position elsewhere."""
    grids = list(jnp.indices(index.shape, sparse=True))
    grids[dim % index.ndim] = index
    return tuple(grids)


def aten_gather(x, dim, index):
    """aten.gather: out[i][j] = x[index[i][j]][j] (index may be smaller than x in other dims)."""
    return x[aten_scatter_index(index, dim)]


def aten_scatter(x, dim, index, src, reduce="set", include_self=True):
    """aten.scatter / scatter_add / scatter_reduce.two (sum, prod, amax, amin, mean)."""
    idx = aten_scatter_index(index, dim)
    src = jnp.broadcast_to(jnp.asarray(src, x.dtype), index.shape) if jnp.ndim(src) == 0 else \
        src[tuple(slice(0, s) for s in index.shape)].astype(x.dtype)
    if reduce == "set":
        return x.at[idx].set(src)
    if reduce in ("sum", "mean"):
        base = x if include_self else x.at[idx].set(0)
        total = base.at[idx].add(src)
        if reduce == "sum":
            return total
        count = jnp.full(x.shape, 1 if include_self else 0, x.dtype).at[idx].add(1)
        out = total / jnp.maximum(count, 1)
        return out if jnp.issubdtype(x.dtype, jnp.floating) else jnp.floor_divide(total, jnp.maximum(count, 1))
    if reduce == "prod":
        base = x if include_self else x.at[idx].set(1)
        return base.at[idx].multiply(src)
    big = jnp.finfo(x.dtype).max if jnp.issubdtype(x.dtype, jnp.floating) else jnp.iinfo(x.dtype).max
    if reduce == "amax":
        base = x if include_self else x.at[idx].set(-big)
        return base.at[idx].max(src)
    base = x if include_self else x.at[idx].set(big)
    return base.at[idx].min(src)


def aten_masked_scatter(x, mask, source):
    """aten.masked_scatter: where mask, source's elements in order."""
    mask = jnp.broadcast_to(mask, x.shape).reshape(-1)
    pos = jnp.clip(jnp.cumsum(mask) - 1, 0, None)
    return jnp.where(mask, source.reshape(-1)[pos].astype(x.dtype), x.reshape(-1)).reshape(x.shape)


def aten_copy(x, src):
    """aten.copy (functional): src broadcast to x's shape, in x's dtype."""
    return jnp.broadcast_to(src, x.shape).astype(x.dtype)


def aten_as_strided(x, size, stride, offset=0):
    """aten.as_strided over x's row-major storage (the lowering checks torch's input is contiguous)."""
    idx = np.full(tuple(size), offset or 0, np.int64)
    for d, (n, s) in enumerate(zip(size, stride)):
        shape = [1] * len(size)
        shape[d] = n
        idx = idx + (np.arange(n) * s).reshape(shape)
    return x.reshape(-1)[idx]


def aten_pad(x, pad, value=0.0):
    """aten.constant_pad_nd: torch's pad list runs from the last dim backwards; negative widths crop."""
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return lax.pad(x, jnp.asarray(value, x.dtype), [(lo, hi, 0) for lo, hi in widths])


def aten_pad_mode(x, pad, mode):
    """aten.reflection_pad{1,2,3}d / replication_pad{2,3}d on the last len(pad) // 2 dims."""
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return jnp.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge"}[mode])


def aten_addmm(bias, a, b, beta=1, alpha=1):
    """aten.addmm: beta * bias + alpha * (a @ b)."""
    y = a @ b
    y = y if alpha == 1 else y * alpha
    return y + (bias if beta == 1 else bias * beta)


def aten_convolution(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    """aten.convolution on torch's (N, C, *spatial) layout: any spatial rank, groups, dilation,
    and the transposed conv as the gradient of a conv (input dilated by the stride, kernel flipped)."""
    nd = x.ndim - 2
    spatial = "DHW"[-nd:] if nd <= 3 else None
    dn = ("NC" + spatial, "OI" + spatial, "NC" + spatial)
    w = weight.astype(x.dtype)
    if not transposed:
        y = lax.conv_general_dilated(x, w, tuple(stride), [(p, p) for p in padding], rhs_dilation=tuple(dilation),
                                     dimension_numbers=dn, feature_group_count=groups)
    else:
        cin, cout_g = w.shape[0], w.shape[1]
        k = w.shape[2:]
        # (Cin, Cout/g, *k) -> (Cout, Cin/g, *k), flipped spatially
        w = w.reshape((groups, cin // groups, cout_g) + k)
        w = jnp.swapaxes(w, 1, 2).reshape((groups * cout_g, cin // groups) + k)
        w = jnp.flip(w, axis=tuple(range(2, 2 + nd)))
        pads = [(d * (kk - 1) - p, d * (kk - 1) - p + op) for kk, p, d, op in zip(k, padding, dilation, output_padding)]
        y = lax.conv_general_dilated(x, w, (1,) * nd, pads, lhs_dilation=tuple(stride), rhs_dilation=tuple(dilation),
                                     dimension_numbers=dn, feature_group_count=groups)
    if bias is not None:
        y = y + bias.astype(y.dtype).reshape((1, -1) + (1,) * nd)
    return y


def aten_window_pads(sizes, kernel, stride, padding, dilation, ceil_mode):
    """(low, high) reduce_window padding of the trailing dims for torch's pooling windows."""
    out = []
    for size, k, s, p, d in zip(sizes, kernel, stride, padding, dilation):
        n = pool_out_size(size, k, s, p, d, ceil_mode)
        out.append((p, max((n - 1) * s + d * (k - 1) + 1 - size - p, 0)))
    return out


def aten_pool_args(x, kernel, stride, padding, dilation, nd):
    """Kernel, stride (empty: the kernel), padding and dilation of an nd pooling as nd-tuples."""
    def full(v, default):
        v = default if v is None or (not isinstance(v, int) and len(v) == 0) else v
        return (int(v),) * nd if isinstance(v, int) else tuple(int(a) for a in v) * (nd if len(v) == 1 else 1)
    kernel = full(kernel, 1)
    return kernel, full(stride, kernel), full(padding, 0), full(dilation, 1)


def aten_max_pool(x, kernel, stride=(), padding=0, dilation=1, ceil_mode=False, nd=2):
    """aten.max_pool{2,3}d_with_indices' values on the trailing nd dims (-inf padding, torch's windows)."""
    kernel, stride, padding, dilation = aten_pool_args(x, kernel, stride, padding, dilation, nd)
    lead = x.ndim - nd
    pads = aten_window_pads(x.shape[lead:], kernel, stride, padding, dilation, ceil_mode)
    return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, (1,) * lead + kernel, (1,) * lead + stride,
                             [(0, 0)] * lead + pads, window_dilation=(1,) * lead + dilation)


def aten_avg_pool(x, kernel, stride=(), padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None,
                  nd=2):
    """aten.avg_pool{2,3}d on the trailing nd dims: torch's divisors (padding counted when
    count_include_pad, ceil_mode's overhang never)."""
    kernel, stride, padding, _ = aten_pool_args(x, kernel, stride, padding, 1, nd)
    lead = x.ndim - nd
    pads = aten_window_pads(x.shape[lead:], kernel, stride, padding, (1,) * nd, ceil_mode)
    win, strides = (1,) * lead + kernel, (1,) * lead + stride
    total = lax.reduce_window(x, np.array(0, x.dtype), lax.add, win, strides, [(0, 0)] * lead + pads)
    if divisor_override:
        return total / divisor_override
    ones = np.ones(x.shape[lead:], np.float64)
    if count_include_pad:
        ones = np.pad(ones, [(p, p) for p in padding], constant_values=1.0)
        extra = [(0, max(hi - p, 0)) for (_, hi), p in zip(pads, padding)]
    else:
        extra = pads
    ones = np.pad(ones, extra)
    div = ones
    for i, (k, s) in enumerate(zip(kernel, stride)):  # window sums along each dim in turn
        c = np.cumsum(np.concatenate([np.zeros_like(np.take(div, [0], axis=i)), div], axis=i), axis=i)
        n = (div.shape[i] - k) // s + 1
        div = np.take(c, np.arange(n) * s + k, axis=i) - np.take(c, np.arange(n) * s, axis=i)
    return total / jnp.asarray(div, x.dtype)


def aten_adaptive_avg_pool(x, output_size):
    """aten._adaptive_avg_pool{2,3}d on the trailing dims: torch's bins [floor(i*L/out), ceil((i+1)*L/out))."""
    nd = len(output_size)
    for j, out in enumerate(output_size):
        axis = x.ndim - nd + j
        parts = [jnp.mean(lax.slice_in_dim(x, a, b, axis=axis), axis=axis, keepdims=True)
                 for a, b in _bins(x.shape[axis], out)]
        x = jnp.concatenate(parts, axis=axis)
    return x


def aten_adaptive_max_pool(x, output_size):
    """aten.adaptive_max_pool2d's values on the trailing dims (torch's bins)."""
    nd = len(output_size)
    for j, out in enumerate(output_size):
        axis = x.ndim - nd + j
        x = jnp.concatenate([jnp.max(lax.slice_in_dim(x, a, b, axis=axis), axis=axis, keepdims=True)
                             for a, b in _bins(x.shape[axis], out)], axis=axis)
    return x


def aten_upsample(x, output_size, scales, mode, align_corners=False):
    """aten.upsample_{nearest,bilinear}2d (.vec and .default) on (N, C, H, W): torch's size and index rules."""
    hw = x.shape[-2:]
    scales = tuple(scales) if scales else (None, None)
    out = tuple(output_size) if output_size else tuple(int(math.floor(s * f)) for s, f in zip(hw, scales))
    y = jnp.transpose(x, (0, 2, 3, 1))
    y = upsample_nearest(y, out, scales) if mode == "nearest" else upsample_bilinear(y, out, scales, align_corners)
    return jnp.transpose(y, (0, 3, 1, 2))


def aten_layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """aten.native_layer_norm: (out, mean, rstd) over the last len(normalized_shape) dims."""
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    rstd = lax.rsqrt(jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True) + eps)
    y = (x - mean) * rstd
    y = y if weight is None else y * weight.astype(y.dtype)
    return (y if bias is None else y + bias.astype(y.dtype)), mean, rstd


def aten_group_norm(x, weight, bias, n, c, hw, groups, eps):
    """aten.native_group_norm on (N, C, *): (out, mean (N, G), rstd (N, G))."""
    g = x.reshape(n, groups, -1)
    mean = jnp.mean(g, axis=2, keepdims=True)
    rstd = lax.rsqrt(jnp.mean(jnp.square(g - mean), axis=2, keepdims=True) + eps)
    y = ((g - mean) * rstd).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    y = y if weight is None else y * weight.astype(y.dtype).reshape(shape)
    y = y if bias is None else y + bias.astype(y.dtype).reshape(shape)
    return y, mean.reshape(n, groups), rstd.reshape(n, groups)


def aten_batch_norm(x, weight, bias, mean, var, eps, batch_stats):
    """aten batch norm on (N, C, *): running statistics, or the batch's (biased variance) when
    `batch_stats`; returns (out, saved mean, saved rstd) as torch does (empty with running stats)."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if batch_stats:
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - mean.reshape(shape)), axis=axes)
    rstd = lax.rsqrt(var.astype(x.dtype) + eps)
    y = (x - mean.astype(x.dtype).reshape(shape)) * rstd.reshape(shape)
    y = y if weight is None else y * weight.astype(y.dtype).reshape(shape)
    y = y if bias is None else y + bias.astype(y.dtype).reshape(shape)
    saved = (mean, rstd) if batch_stats else (jnp.zeros((0,), x.dtype), jnp.zeros((0,), x.dtype))
    return (y, *saved)


def aten_embedding(weight, indices):
    """aten.embedding: rows of weight."""
    return jnp.take(weight, indices, axis=0)


def aten_cdist(a, b, p=2.0):
    """aten._cdist_forward: p-norm distances between the rows of a and b (batched)."""
    d = jnp.abs(a[..., :, None, :] - b[..., None, :, :])
    if p == float("inf"):
        return jnp.max(d, axis=-1)
    if p == 0:
        return jnp.sum((d != 0).astype(a.dtype), axis=-1)
    return jnp.sum(d ** p, axis=-1) ** (1.0 / p)


def aten_pdist(x, p=2.0):
    """aten._pdist_forward: distances of the row pairs i < j, row-major."""
    i, j = np.triu_indices(x.shape[0], 1)
    return aten_cdist(x[i][:, None, :], x[j][:, None, :], p)[:, 0, 0]


def aten_grid_sample(x, grid, interpolation, padding, align_corners):
    """aten.grid_sampler_2d, bilinear (0) or nearest (1), zeros (0) / border (1) padding."""
    n, c, h, w = x.shape

    def unnormalize(v, size):
        return ((v + 1) / 2) * (size - 1) if align_corners else ((v + 1) * size - 1) / 2

    gx, gy = unnormalize(grid[..., 0], w), unnormalize(grid[..., 1], h)
    if padding == 1:
        gx, gy = jnp.clip(gx, 0, w - 1), jnp.clip(gy, 0, h - 1)
    batch = jnp.arange(n)[:, None, None]

    def tap(iy, ix):
        ok = (ix >= 0) & (ix <= w - 1) & (iy >= 0) & (iy <= h - 1)
        v = x[batch, :, jnp.clip(iy, 0, h - 1), jnp.clip(ix, 0, w - 1)]  # (N, Ho, Wo, C)
        return jnp.where(ok[..., None], v, 0)

    if interpolation == 1:
        out = tap(jnp.round(gy).astype(jnp.int32), jnp.round(gx).astype(jnp.int32))
    else:
        x0, y0 = jnp.floor(gx), jnp.floor(gy)
        fx, fy = (gx - x0)[..., None], (gy - y0)[..., None]
        x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
        out = (tap(y0, x0) * (1 - fx) * (1 - fy) + tap(y0, x0 + 1) * fx * (1 - fy)
               + tap(y0 + 1, x0) * (1 - fx) * fy + tap(y0 + 1, x0 + 1) * fx * fy)
    return jnp.transpose(out, (0, 3, 1, 2))


def aten_max_pool_with_indices(x, kernel, stride=(), padding=0, dilation=1, ceil_mode=False, nd=2):
    """aten.max_pool{2,3}d_with_indices as (values, None): the port refuses a read of the indices."""
    return aten_max_pool(x, kernel, stride, padding, dilation, ceil_mode, nd), None


def aten_adaptive_max_pool_with_indices(x, output_size):
    """aten.adaptive_max_pool2d as (values, None): the port refuses a read of the indices."""
    return aten_adaptive_max_pool(x, output_size), None


def aten_no_dropout(x):
    """aten.native_dropout with train False: (x, an all-true mask)."""
    return x, jnp.ones(x.shape, bool)


def aten_batch_norm_functional(x, weight, bias, mean, var, training, momentum, eps):
    """aten._native_batch_norm_legit_functional: (out, saved mean, saved rstd, new running mean, new running
    var); in training the batch's statistics normalise and update the running ones (unbiased variance)."""
    if not training:
        return (*aten_batch_norm(x, weight, bias, mean, var, eps, False), mean, var)
    y, bmean, rstd = aten_batch_norm(x, weight, bias, None, None, eps, True)
    n = x.size // x.shape[1]
    bvar = jnp.mean(jnp.square(x - bmean.reshape((1, -1) + (1,) * (x.ndim - 2))), axis=(0,) + tuple(range(2, x.ndim)))
    new_mean = (1 - momentum) * mean + momentum * bmean
    new_var = (1 - momentum) * var + momentum * bvar * n / max(n - 1, 1)
    return y, bmean, rstd, new_mean, new_var


def aten_col2im(x, output_size, kernel, dilation, padding, stride):
    """aten.col2im (F.fold): the (N, C*kh*kw, L) blocks summed back into (N, C, H, W)."""
    batched = x.ndim == 3
    x = x if batched else x[None]
    (kh, kw), (dh, dw), (ph, pw), (sh, sw), (h, w) = kernel, dilation, padding, stride, output_size
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    n, c = x.shape[0], x.shape[1] // (kh * kw)
    blocks = x.reshape(n, c, kh, kw, oh, ow)
    out = jnp.zeros((n, c, h + 2 * ph, w + 2 * pw), x.dtype)
    for i in range(kh):
        for j in range(kw):
            out = out.at[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw].add(
                blocks[:, :, i, j])
    out = out[:, :, ph:ph + h, pw:pw + w]
    return out if batched else out[0]


def aten_masked(values, mask):
    """The outputs of a backward op its output_mask asks for (None for the others, as torch returns)."""
    return tuple(v if keep else None for v, keep in zip(values, mask))


def aten_convolution_backward(grad, x, weight, bias_sizes, stride, padding, dilation, transposed, output_padding,
                              groups, output_mask):
    """aten.convolution_backward: (grad input, grad weight, grad bias) of `aten_convolution`."""
    def conv(a, b):
        return aten_convolution(a, b, None, stride, padding, dilation, transposed, output_padding, groups)

    _, vjp = jax.vjp(conv, x, weight.astype(x.dtype))
    gx, gw = vjp(grad.astype(x.dtype))
    gb = jnp.sum(grad, axis=(0,) + tuple(range(2, grad.ndim)))
    return aten_masked((gx, gw, gb), output_mask)


def aten_avg_pool_backward(grad, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override, nd=2):
    """aten.avg_pool2d_backward: the gradient of `aten_avg_pool` with respect to its input."""
    _, vjp = jax.vjp(lambda a: aten_avg_pool(a, kernel, stride, padding, ceil_mode, count_include_pad,
                                             divisor_override, nd), x)
    return vjp(grad.astype(x.dtype))[0]


def aten_max_pool_backward(grad, x, kernel, stride, padding, dilation, ceil_mode, nd=2):
    """aten.max_pool2d_with_indices_backward: each window's gradient to its (first) maximum."""
    _, vjp = jax.vjp(lambda a: aten_max_pool(a, kernel, stride, padding, dilation, ceil_mode, nd), x)
    return vjp(grad.astype(x.dtype))[0]


def aten_adaptive_avg_pool_backward(grad, x):
    """aten._adaptive_avg_pool2d_backward: the gradient of `aten_adaptive_avg_pool`."""
    _, vjp = jax.vjp(lambda a: aten_adaptive_avg_pool(a, grad.shape[-2:]), x)
    return vjp(grad.astype(x.dtype))[0]


def aten_norm_backward(grad, x, mean, rstd, weight, axes, channel_shape):
    """Layer and group norm backward from the saved mean and rstd (normalised over `axes` of x viewed as
    the saved statistics' grouping): (grad input, grad weight, grad bias)."""
    xhat = (x - mean) * rstd
    g = grad if weight is None else grad * weight.astype(x.dtype).reshape(channel_shape)
    dx = rstd * (g - jnp.mean(g, axis=axes, keepdims=True) - xhat * jnp.mean(g * xhat, axis=axes, keepdims=True))
    return dx, xhat


def aten_layer_norm_backward(grad, x, normalized_shape, mean, rstd, weight, bias, output_mask):
    """aten.native_layer_norm_backward over the last len(normalized_shape) dims."""
    k = len(normalized_shape)
    axes = tuple(range(x.ndim - k, x.ndim))
    dx, xhat = aten_norm_backward(grad, x, mean, rstd, weight, axes, tuple(normalized_shape))
    batch = tuple(range(x.ndim - k))
    return aten_masked((dx, jnp.sum(grad * xhat, axis=batch), jnp.sum(grad, axis=batch)), output_mask)


def aten_group_norm_backward(grad, x, mean, rstd, weight, n, c, hw, groups, output_mask):
    """aten.native_group_norm_backward on (N, C, *) with the saved (N, G) mean and rstd."""
    shape = x.shape
    gx = x.reshape(n, groups, c // groups, -1)
    gg = grad.reshape(n, groups, c // groups, -1)
    w = None if weight is None else weight.reshape(groups, c // groups, 1)
    dx, xhat = aten_norm_backward(gg, gx, mean.reshape(n, groups, 1, 1), rstd.reshape(n, groups, 1, 1), w,
                                  (2, 3), (1, groups, c // groups, 1))
    dw = jnp.sum(gg * xhat, axis=(0, 3)).reshape(c)
    return aten_masked((dx.reshape(shape), dw, jnp.sum(gg, axis=(0, 3)).reshape(c)), output_mask)


def aten_embedding_backward(grad, indices, num_weights, padding_idx=-1, scale_grad_by_freq=False):
    """aten.embedding_dense_backward: each row's gradient summed per index (padding_idx's stays 0)."""
    flat = indices.reshape(-1)
    g = grad.reshape(flat.shape[0], -1)
    if scale_grad_by_freq:
        counts = jnp.zeros((num_weights,), g.dtype).at[flat].add(1)
        g = g / counts[flat][:, None]
    if padding_idx >= 0:
        g = jnp.where((flat == padding_idx)[:, None], 0, g)
    return jnp.zeros((num_weights, g.shape[1]), g.dtype).at[flat].add(g)


def aten_finfo(x, attr):
    """`torch.finfo(x.dtype).<attr>` (eps, tiny, max, min) of the float x is computed in."""
    return float(getattr(jnp.finfo(x.dtype), attr))
