"""The ported model: an NNX module holding the layers under their torch paths and running a Program.

`PortedModule(x, key=None)` takes NHWC input; `key` feeds every dropout and random op (one fold
each, in program order) in train mode. `.train()` / `.eval()` reach the layers' `deterministic` /
`use_running_average` and the module's own `deterministic`, which also picks the eval-mode program
when the torch forward branches on `self.training`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from flax_cnn.model import layers as fl
from parity.port import layers as pl
from parity.port import functions
from parity.port.functions import FUNCTIONS
from parity.port.pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from parity.port.program import NHWC, Op, Program, Ref, SliceArg

_OPS = {**FUNCTIONS, "max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d, "adaptive_avg_pool2d": adaptive_avg_pool2d}

RANDOM_OPS = frozenset({"uniform", "normal", "bernoulli"})
RESERVED = frozenset({"port_program", "port_eval_program", "port_source", "port_batch_size", "port_random",
                      "deterministic"})


def _resolve(a: Any, env: dict[str, Any]) -> Any:
    if isinstance(a, Ref):
        return env[a.name]
    if isinstance(a, tuple):
        return tuple(_resolve(x, env) for x in a)
    if isinstance(a, SliceArg):
        return slice(_resolve(a.start, env), _resolve(a.stop, env), _resolve(a.step, env))
    return a


class PortedModule(nnx.Module):
    """A torch CNN as native NNX: submodules named after the torch modules, forward as a Program."""

    def __init__(self, children: dict[str, nnx.Module], program: Program, source: str, *,
                 eval_program: Program | None = None, batch_size: int | None = None):
        for name, child in children.items():
            setattr(self, name, child)
        self.port_program = program
        self.port_eval_program = eval_program
        self.port_source = source
        self.port_batch_size = batch_size
        self.port_random = None
        """A parity check's fixed random values: `port_random(kind, index, torch_shape, p)` -> NCHW numpy."""
        self.deterministic = False

    def __call__(self, x, key=None):
        prog, env = self._run(x, key)
        return _resolve(prog.output, env)

    def values(self, x, names: tuple[str, ...], key=None) -> dict[str, Any]:
        """The program's values `names` (fx node names) for input `x`: what a parity probe reads."""
        _, env = self._run(x, key)
        return {n: env[n] for n in names if n in env}

    def _run(self, x, key):
        if self.port_batch_size is not None and x.shape[0] != self.port_batch_size:
            raise ValueError(f"this port of {self.port_source} runs only with batch {self.port_batch_size} "
                             f"(its forward uses the batch size as a Python number); got {x.shape[0]}: port it "
                             "again with that batch size")
        prog = self.port_eval_program if self.deterministic and self.port_eval_program is not None \
            else self.port_program
        env: dict[str, Any] = {prog.input: x}
        for op in prog.ops:
            env[op.out] = self._apply(op, env, key)
        return prog, env

    def _apply(self, op: Op, env: dict[str, Any], key):
        args, kwargs = _resolve(op.args, env), {k: _resolve(v, env) for k, v in op.kwargs}
        sub = None if key is None or op.dropout_index < 0 else jax.random.fold_in(key, op.dropout_index)
        if op.kind == "module":
            layer = pl.child(self, op.target)
            return layer(*args, sub) if op.dropout_index >= 0 else layer(*args)  # dropouts take the key
        if op.kind == "dropout":
            if self.port_random is not None and not self.deterministic:
                return args[0] * self._fixed("dropout", op, args[0], kwargs["rate"])
            return fl.Dropout(kwargs["rate"], deterministic=self.deterministic)(*args, sub)
        if op.kind in RANDOM_OPS:
            return self._random(op, args, kwargs, sub)
        return _OPS[op.kind](*args, **kwargs)

    def _random(self, op: Op, args: tuple, kwargs: dict, key):
        """rand/randn/bernoulli: drawn with the op's key fold, or a parity check's fixed values."""
        if op.kind == "bernoulli":  # bernoulli(probabilities) or like.bernoulli_(p)
            like = args[0]
            prob = kwargs["p"] if kwargs.get("p") is not None else like
            shape, dtype = like.shape, like.dtype
        elif hasattr(args[0], "shape"):  # rand_like / randn_like
            shape, dtype = args[0].shape, kwargs.get("dtype") or args[0].dtype
        else:
            shape, dtype = tuple(args[0]), kwargs.get("dtype") or jnp.float32
        if self.port_random is not None:
            u = self._fixed(op.kind, op, jnp.zeros(shape, dtype), None)
            return (u < prob).astype(dtype) if op.kind == "bernoulli" else u
        if key is None:
            raise ValueError(f"{op.out}: a random op ({op.kind}) needs a PRNG key: call the module with key=...")
        if op.kind == "uniform":
            return jax.random.uniform(key, shape, dtype)
        if op.kind == "normal":
            return jax.random.normal(key, shape, dtype)
        return jax.random.bernoulli(key, prob, shape).astype(dtype)

    def _fixed(self, kind: str, op: Op, like, rate):
        """The check's values for random site `op.random_index` (NCHW from the check), in `like`'s layout."""
        values = self.port_random(kind, op.random_index, functions.torch_shape(like, op.layout), rate)
        return jnp.asarray(values.transpose(0, 2, 3, 1) if op.layout == NHWC and values.ndim == 4 else values,
                           like.dtype)
