"""The NNX layers a port builds: flax_cnn.model.layers where they cover the torch module (Dropout, and the
bases of these), thin extensions where torch allows more (a conv bias, per-side padding, (kh, kw)
kernels, BatchNorm without affine, Linear without bias).

Conv math stays in `flax_cnn.model.ops.conv2d` (explicit padding, the fast depthwise path) and
BatchNorm semantics in `flax_cnn.model.layers.BatchNorm2d`: one implementation of each in the project.
Weights are always copied in from torch, so kernels start as zeros (no init draw).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from flax_cnn.model import layers as fl
from parity.port import pooling
from parity.port.functions import FUNCTIONS, flatten

Pair = tuple[int, int]


@dataclass(frozen=True)
class Constant:
    """A fixed tensor standing in for a Variable torch does not have (BN affine=False, Linear bias=False).

    Static (part of the GraphDef), so it is neither a Param nor a BatchStat: it trains not, counts not.
    """

    fill: float
    shape: tuple[int, ...]

    def get_value(self):
        return jnp.full(self.shape, self.fill, jnp.float32)


class Conv2d(fl.Conv2d):
    """flax_cnn's Conv2d plus torch's bias, per-side padding (`'same'`, F.pad-style) and (kh, kw) kernels."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: Pair, *, stride: Pair, dilation: Pair,
                 padding: tuple[Pair, Pair], groups: int, bias: bool):
        self.kernel = nnx.Param(jnp.zeros((*kernel_size, in_ch // groups, out_ch), jnp.float32))
        if bias:
            self.bias = nnx.Param(jnp.zeros((out_ch,), jnp.float32))
        self.has_bias = bias
        self.groups = groups
        square = kernel_size[0] == kernel_size[1] and stride[0] == stride[1] and dilation[0] == dilation[1]
        symmetric = len({*padding[0], *padding[1]}) == 1
        self.native = square  # flax_cnn.model.ops.conv2d takes one int per stride/dilation/padding
        self.stride, self.dilation = (stride[0], dilation[0]) if square else (stride, dilation)
        self.padding = padding[0][0] if square and symmetric else 0
        self.pre_pad = None if symmetric and square else padding

    def __call__(self, x):
        if self.pre_pad is not None:  # per-side padding first, then a padding-free conv
            x = jnp.pad(x, ((0, 0), self.pre_pad[0], self.pre_pad[1], (0, 0)))
        if self.native:
            y = super().__call__(x)
        else:
            y = lax.conv_general_dilated(x, self.kernel.get_value().astype(x.dtype), self.stride, ((0, 0), (0, 0)),
                                         rhs_dilation=self.dilation, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                         feature_group_count=self.groups)
        if self.has_bias:
            y = y + self.bias.get_value().astype(y.dtype)
        return y


class BatchNorm2d(fl.BatchNorm2d):
    """flax_cnn's BatchNorm2d (torch running statistics); without affine, scale 1 and bias 0 are constants."""

    def __init__(self, num_features: int, *, momentum: float, eps: float, affine: bool):
        super().__init__(num_features, momentum=momentum, eps=eps, unbiased_running_var=True)
        if not affine:
            del self.scale, self.bias
            self.scale = Constant(1.0, (num_features,))
            self.bias = Constant(0.0, (num_features,))


class Linear(fl.Linear):
    """flax_cnn's Linear; without a torch bias the bias is a constant zero."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool):
        self.kernel = nnx.Param(jnp.zeros((in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if bias else Constant(0.0, (out_features,))


class Activation(nnx.Module):
    """An elementwise torch activation module; `fn` names the function in `parity.port.functions`."""

    def __init__(self, fn: str, options: tuple[tuple[str, object], ...] = ()):
        self.fn, self.options = fn, options

    def __call__(self, x):
        return FUNCTIONS[self.fn](x, **dict(self.options))


class MaxPool2d(nnx.Module):
    def __init__(self, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, ceil_mode: bool):
        self.kernel, self.stride, self.pad, self.dilation, self.ceil_mode = kernel, stride, padding, dilation, ceil_mode

    def __call__(self, x):
        return pooling.max_pool2d(x, self.kernel, self.stride, self.pad, self.dilation, self.ceil_mode)


class AvgPool2d(nnx.Module):
    def __init__(self, kernel: Pair, stride: Pair, padding: Pair, ceil_mode: bool, count_include_pad: bool,
                 divisor_override: int | None):
        self.kernel, self.stride, self.pad = kernel, stride, padding
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def __call__(self, x):
        return pooling.avg_pool2d(x, self.kernel, self.stride, self.pad, self.ceil_mode, self.count_include_pad,
                                  self.divisor_override)


class AdaptiveAvgPool2d(nnx.Module):
    def __init__(self, output_size: tuple[int | None, int | None]):
        self.output_size = output_size

    def __call__(self, x):
        return pooling.adaptive_avg_pool2d(x, self.output_size)


class Flatten(nnx.Module):
    """torch Flatten on a torch-layout (NCHW) input: the port puts the transpose in front of it."""

    def __init__(self, start_dim: int, end_dim: int):
        self.start_dim, self.end_dim = start_dim, end_dim

    def __call__(self, x):
        return flatten(x, self.start_dim, self.end_dim)


class Identity(nnx.Module):
    def __call__(self, x):
        return x


class Scope(nnx.Module):
    """A torch container (Sequential, a user block): holds the children under their torch names."""

    def __init__(self, torch_type: str):
        self.torch_type = torch_type


def child(root: nnx.Module, path: str) -> nnx.Module:
    """The submodule at a dotted torch path ('layer1.0.conv1')."""
    m = root
    for part in path.split("."):
        m = getattr(m, part)
    return m


def count_params(module: nnx.Module) -> int:
    return sum(int(a.size) for a in jax.tree.leaves(nnx.state(module, nnx.Param)))
