"""jit for the parity checks: compiled for compile time, not run time, with the trainer's kernels.

A check runs each program a handful of times, so XLA:CPU's LLVM optimisation and its fusion
emitters cost far more than they save (a zoo model's gradient: 10 s to compile at the defaults,
1 s with them off). The numerics that matter stay the trainer's: reductions (BatchNorm's sums)
run on YNNPACK as `flax_cnn.model.ops.cpu_compiler_options` sends them in training, convolutions on the
same Eigen kernels. Models are passed as (graph, state): NNX graphs are hashable, so every check
of an equal graph in the same mode, dtype, shape and conv formulation reuses one compilation.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
from flax import nnx

from flax_cnn.model import ops

FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def compiler_options() -> dict | None:
    """The trainer's XLA:CPU options plus FAST_COMPILE on CPU; None (the defaults) elsewhere."""
    base = ops.cpu_compiler_options()
    return None if base is None else {**base, **FAST_COMPILE}


_CACHES: list = []


def clear() -> None:
    """Forget every compilation (a test that patches a kernel must not reuse one traced before)."""
    for cache in _CACHES:
        cache.cache_clear()
    jax.clear_caches()


def _fresh(state):
    """New arrays for the state's leaves, so the module merged from them may update its BatchNorm statistics."""
    return jax.tree.map(lambda a: a, state)


def module_jit(fn: Callable) -> Callable:
    """`fn(module, *args)` jitted over the module's state (`static` args hashable); state updates (BN
    statistics) are written back to the module, as `nnx.jit` does."""

    @functools.cache
    def jitted():
        def pure(graphdef, state, static, formulation, *args):
            m = nnx.merge(graphdef, _fresh(state))
            with ops.formulation(formulation):
                out = fn(m, *args, *static)
            return out, nnx.state(m)
        return jax.jit(pure, static_argnums=(0, 2, 3), compiler_options=compiler_options())

    _CACHES.append(jitted)

    def call(model, *args, static: tuple = ()):
        graphdef, state = nnx.split(model)
        out, new_state = jitted()(graphdef, state, tuple(static), ops.active_formulation(), *args)
        nnx.update(model, new_state)
        return out

    return call


def value_and_grad(loss: Callable) -> Callable:
    """(loss, d loss / d params) of `loss(module, *args, *static)`, jitted over the module's state."""

    @functools.cache
    def jitted():
        def pure(graphdef, params, rest, static, formulation, *args):
            def of_params(p):
                return loss(nnx.merge(graphdef, _fresh(p), _fresh(rest)), *args, *static)
            with ops.formulation(formulation):
                return jax.value_and_grad(of_params)(params)
        return jax.jit(pure, static_argnums=(0, 3, 4), compiler_options=compiler_options())

    _CACHES.append(jitted)

    def call(model, *args, static: tuple = ()):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        return jitted()(graphdef, params, rest, tuple(static), ops.active_formulation(), *args)

    return call
