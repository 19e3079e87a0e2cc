"""What the translator records for each torch module it ports: the `parity.port.runtime` class and
its constructor arguments (`LayerSpec`). The emitter writes them as constructor calls in `model.py`;
the module that runs is always built from that file, never from these records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import jax
from flax import nnx

from parity.port import runtime


@dataclass(frozen=True)
class LayerSpec:
    """`runtime.<cls>(*args, **kwargs)`; `fn` names an activation function (Activation's first argument)."""

    cls: str
    args: tuple = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    fn: str | None = None
    tensors: tuple[tuple[str, str, str], ...] = field(default=(), compare=False)
    """(torch tensor name, Flax variable name, layout) of each torch tensor the layer owns."""

    def build(self) -> nnx.Module:
        """An abstract instance (shapes only, no arrays allocated): to count parameters."""
        cls = getattr(runtime, self.cls)
        args = (getattr(runtime, self.fn, None) or _jax_fn(self.fn),) + self.args if self.fn else self.args
        return nnx.eval_shape(lambda: cls(*args, **dict(self.kwargs)))


def _jax_fn(name: str):
    mod, _, attr = name.rpartition(".")
    obj = {"jax.nn": jax.nn, "jnp": jax.numpy}[mod]
    return getattr(obj, attr)


_CONV = (("weight", "kernel", "conv"), ("bias", "bias", "copy"))
_AFFINE = (("weight", "scale", "copy"), ("bias", "bias", "copy"))
TENSORS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "Conv2d": _CONV,
    "ConvTranspose2d": (("weight", "kernel", "conv_transpose"), ("bias", "bias", "copy")),
    "BatchNorm2d": _AFFINE + (("running_mean", "mean", "copy"), ("running_var", "var", "copy"),
                              ("num_batches_tracked", "num_batches_tracked", "count")),
    "GroupNorm": _AFFINE, "InstanceNorm2d": _AFFINE, "LayerNorm": _AFFINE,
    "Linear": (("weight", "kernel", "dense"), ("bias", "bias", "copy")),
    "PReLU": (("weight", "weight", "copy"),),
}
"""The torch tensors of each runtime layer and their Flax names and layouts: the key map's rows."""


def spec(cls: str, *args, **kwargs) -> LayerSpec:
    if not hasattr(runtime, cls):
        raise KeyError(f"parity.port.runtime has no layer {cls}")
    return LayerSpec(cls, args, tuple(kwargs.items()), tensors=TENSORS.get(cls, ()))


def activation(fn: str, **options) -> LayerSpec:
    """An Activation layer; `fn` is a runtime function name or a `jax.nn.*` / `jnp.*` name."""
    return LayerSpec("Activation", (), tuple(sorted(options.items())), fn=fn)


def count_params(module: nnx.Module) -> int:
    return sum(math.prod(a.shape) for a in jax.tree.leaves(nnx.state(module, nnx.Param)))


def child(root: nnx.Module, path: str) -> nnx.Module:
    """The submodule at a dotted torch path ('layer1.0.conv1')."""
    m = root
    for part in path.split("."):
        m = getattr(m, part)
    return m
