"""NNX layers that mirror torch's semantics exactly: conv padding, BatchNorm statistics, init.

Parity traps handled here, by name:
- padding: explicit symmetric `dilation*(k-1)//2`, never 'SAME' (see `ops`);
- BatchNorm momentum: torch's `momentum=0.1` is Flax's `0.9`; we store the torch value;
- BatchNorm running variance: torch updates it with the *unbiased* batch variance, Flax with
  the biased one; `unbiased_running_var=True` follows torch. Normalisation itself always uses
  the biased variance, in both frameworks;
- variance: two-pass `mean((x - mean)**2)`, like Flax's `use_fast_variance=False`;
- init: kernels U(±1/sqrt(fan_in)) like torch's default kaiming_uniform(a=sqrt(5)).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from flax_cnn.model import ops
from flax_cnn.model.batch_norm import batch_norm_train, normalize

ACTIVATIONS: dict[str, Callable] = {
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "silu": jax.nn.silu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # torch's nn.GELU default is exact erf
}

# torch's default for Conv2d / Linear weights: kaiming_uniform(a=sqrt(5)) == U(±1/sqrt(fan_in)).
torch_default_kernel_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class Conv2d(nnx.Module):
    """k×k conv without bias; kernel in HWIO layout (torch's OIHW transposed (2, 3, 1, 0))."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, stride: int = 1, dilation: int = 1,
                 padding: int = 0, groups: int = 1, rngs: nnx.Rngs):
        shape = (kernel_size, kernel_size, in_ch // groups, out_ch)
        self.kernel = nnx.Param(torch_default_kernel_init(rngs.params(), shape, jnp.float32))
        self.stride, self.dilation, self.padding, self.groups = stride, dilation, padding, groups

    def __call__(self, x):
        return ops.conv2d(x, self.kernel.get_value(), stride=self.stride, dilation=self.dilation,
                          padding=self.padding, groups=self.groups)


class SeparableConv2d(nnx.Module):
    """Depthwise k×k (groups = in channels; carries stride and dilation) then pointwise 1×1."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, stride: int = 1, dilation: int = 1,
                 padding: int = 0, rngs: nnx.Rngs):
        self.depthwise = Conv2d(in_ch, in_ch, kernel_size, stride=stride, dilation=dilation,
                                padding=padding, groups=in_ch, rngs=rngs)
        self.pointwise = Conv2d(in_ch, out_ch, 1, rngs=rngs)

    def __call__(self, x):
        return self.pointwise(self.depthwise(x))


class BatchNorm2d(nnx.Module):
    """BatchNorm over N, H, W of NHWC input, with torch's running-statistics semantics.

    `momentum` is torch's (weight of the new batch statistic). Statistics are computed in at
    least float32 (float32 for bf16 activations, float64 for float64 ones). In training the
    normalisation has a hand-written backward (`flax_cnn.model.batch_norm`).
    """

    def __init__(self, num_features: int, *, momentum: float = 0.1, eps: float = 1e-5,
                 unbiased_running_var: bool = True, use_running_average: bool = False):
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))
        self.momentum, self.eps = momentum, eps
        self.unbiased_running_var = unbiased_running_var
        self.use_running_average = use_running_average

    def __call__(self, x):
        dtype = x.dtype
        x32 = x.astype(jnp.promote_types(dtype, jnp.float32))
        if self.use_running_average:
            return normalize(x32, self.mean.get_value(), self.var.get_value(), self.scale.get_value(),
                             self.bias.get_value(), self.eps).astype(dtype)
        y, mean, var = batch_norm_train(x32, self.scale.get_value(), self.bias.get_value(), self.eps)
        n = x.shape[0] * x.shape[1] * x.shape[2]
        running_var = var * (n / (n - 1)) if (self.unbiased_running_var and n > 1) else var
        m = self.momentum
        self.mean.set_value((1.0 - m) * self.mean.get_value() + m * mean)
        self.var.set_value((1.0 - m) * self.var.get_value() + m * running_var)
        self.num_batches_tracked.set_value(self.num_batches_tracked.get_value() + 1)
        return y.astype(dtype)


def sharding_of(x):
    """x's sharding when it lives on an explicit mesh, else None (no constraint)."""
    s = getattr(jax.typeof(x), "sharding", None)
    mesh = getattr(s, "mesh", None)
    return s if mesh is not None and not mesh.empty else None


class Dropout(nnx.Module):
    """Inverted dropout with an explicit key (no hidden RNG state: runs resume bit-exactly);
    `channel=True` drops whole feature maps of an NHWC input, one draw per (sample, channel), as
    torch's nn.Dropout2d."""

    def __init__(self, rate: float, *, deterministic: bool = False, channel: bool = False):
        self.rate, self.deterministic, self.channel = rate, deterministic, channel

    def __call__(self, x, key=None):
        if self.deterministic or self.rate == 0.0:
            return x
        if key is None:
            raise ValueError("Dropout in train mode needs a PRNG key: call model(x, key=...)")
        # Under an explicit 'data' mesh (multi-process runs) the mask must carry x's sharding: select
        # refuses operands sharded differently (ShardingTypeError), so draw it sharded like x.
        shape = (x.shape[0], 1, 1, x.shape[3]) if self.channel and x.ndim == 4 else x.shape
        keep = jax.random.bernoulli(key, 1.0 - self.rate, shape, out_sharding=sharding_of(x))
        return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros_like(x))


class Linear(nnx.Module):
    """Dense layer; kernel (in, out) is torch's weight (out, in) transposed."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        bound = 1.0 / in_features**0.5
        self.kernel = nnx.Param(torch_default_kernel_init(rngs.params(), (in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jax.random.uniform(rngs.params(), (out_features,), jnp.float32, -bound, bound))

    def __call__(self, x):
        return x @ self.kernel.get_value().astype(x.dtype) + self.bias.get_value().astype(x.dtype)
