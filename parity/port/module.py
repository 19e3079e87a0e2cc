"""The ported model: an NNX module holding the layers under their torch paths and running a Program.

`PortedModule(x, key=None)` takes NHWC input; `key` feeds every dropout (one fold per dropout, in
program order) in train mode. `.train()` / `.eval()` reach the layers' `deterministic` /
`use_running_average` and the module's own `deterministic` (functional `F.dropout` calls).
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from flax_cnn import layers as fl
from parity.port import layers as pl
from parity.port.functions import FUNCTIONS
from parity.port.pooling import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from parity.port.program import Op, Program, Ref, SliceArg

_OPS = {**FUNCTIONS, "max_pool2d": max_pool2d, "avg_pool2d": avg_pool2d, "adaptive_avg_pool2d": adaptive_avg_pool2d}

RESERVED = frozenset({"port_program", "port_source", "deterministic"})


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

    def __init__(self, children: dict[str, nnx.Module], program: Program, source: str):
        for name, child in children.items():
            setattr(self, name, child)
        self.port_program = program
        self.port_source = source
        self.deterministic = False

    def __call__(self, x, key=None):
        prog = self.port_program
        env: dict[str, Any] = {prog.input: x}
        for op in prog.ops:
            env[op.out] = self._apply(op, env, key)
        return _resolve(prog.output, env)

    def _apply(self, op: Op, env: dict[str, Any], key):
        args, kwargs = _resolve(op.args, env), dict(op.kwargs)
        sub = None if key is None or op.dropout_index < 0 else jax.random.fold_in(key, op.dropout_index)
        if op.kind == "module":
            layer = pl.child(self, op.target)
            return layer(*args, sub) if op.dropout_index >= 0 else layer(*args)  # dropouts take the key
        if op.kind == "dropout":
            return fl.Dropout(kwargs["rate"], deterministic=self.deterministic)(*args, sub)
        return _OPS[op.kind](*args, **kwargs)
