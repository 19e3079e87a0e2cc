"""jit for the parity checks: compiled for compile time, not run time, with the trainer's kernels.

A check runs each program a handful of times, so XLA:CPU's LLVM optimisation and its fusion
emitters cost far more than they save (a zoo model's gradient: 10 s to compile at the defaults,
1 s with them off). The numerics that matter stay the trainer's: reductions (BatchNorm's sums)
run on YNNPACK as `flax_cnn.model.ops.cpu_compiler_options` sends them in training, convolutions on the
same Eigen kernels. Models are passed as (graph, state): NNX graphs are hashable, so every check
of an equal graph in the same mode, dtype, shape and conv formulation reuses one compilation.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Callable, Iterator

import jax
import numpy as np
from flax import nnx

from flax_cnn.model import ops

FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}

FLOAT64_FAST_MACS = 50_000_000
"""Above this many multiply-accumulates per forward, float64 programs compile with XLA's defaults.
XLA:CPU runs float32 convolutions on Eigen at any level but emits float64 ones as its own loops, which
LLVM at level 0 leaves unvectorised: measured on a 2-vCPU Xeon (AVX-512), value_and_grad in float64 at
batch 2, first call / each later call: ResNeXt29-2x64d (1.4 G MACs) 7.3 / 3.3 s at the defaults, 103 /
100 s under FAST_COMPILE; a test-zoo GoogLeNet (13 M MACs) 10.4 / 0.03 s vs 3.3 / 0.24 s. A check calls
each program a few times, so level 0 pays off below ~5e7 MACs and costs minutes above it."""

_optimise_float64 = contextvars.ContextVar("optimise_float64", default=False)


@contextlib.contextmanager
def float64_optimised(on: bool = True) -> Iterator[None]:
    """Within: float64 programs compile with XLA's default pipeline (`FLOAT64_FAST_MACS` says when)."""
    token = _optimise_float64.set(on)
    try:
        yield
    finally:
        _optimise_float64.reset(token)


def compiler_options(fast: bool = True) -> dict | None:
    """The trainer's XLA:CPU options plus FAST_COMPILE on CPU; None (the defaults) elsewhere or when
    not `fast`."""
    base = ops.cpu_compiler_options()
    return {**base, **FAST_COMPILE} if base is not None and fast else None


def _fast(*trees) -> bool:
    """FAST_COMPILE for this call: unless float64 programs are to be optimised and it has a float64 input."""
    return not (_optimise_float64.get() and any(getattr(a, "dtype", None) == np.float64 for a in jax.tree.leaves(trees)))


def _finite(out) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(a)))) for a in jax.tree.leaves(out)
               if np.issubdtype(np.asarray(a).dtype, np.floating))


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
    def jitted(fast: bool):
        def pure(graphdef, state, static, formulation, *args):
            m = nnx.merge(graphdef, _fresh(state))
            with ops.formulation(formulation):
                out = fn(m, *args, *static)
            return out, nnx.state(m)
        return jax.jit(pure, static_argnums=(0, 2, 3), compiler_options=compiler_options(fast))

    _CACHES.append(jitted)

    def call(model, *args, static: tuple = ()):
        graphdef, state = nnx.split(model)
        fast = _fast(state, args)
        out, new_state = jitted(fast)(graphdef, state, tuple(static), ops.active_formulation(), *args)
        if fast and not _finite(out):  # see `value_and_grad`: XLA's default pipeline, once more
            out, new_state = jitted(False)(graphdef, state, tuple(static), ops.active_formulation(), *args)
        nnx.update(model, new_state)
        return out

    return call


def value_and_grad(loss: Callable, *, has_aux: bool = False) -> Callable:
    """(loss, d loss / d params) of `loss(module, *args, *static)`, jitted over the module's state;
    with `has_aux`, `loss` returns (value, aux) and the result is ((value, aux), grads), both from one
    compiled computation (a kink probe must read the forward that the gradient differentiates)."""

    @functools.cache
    def jitted(fast: bool):
        def pure(graphdef, params, rest, static, formulation, *args):
            def of_params(p):
                return loss(nnx.merge(graphdef, _fresh(p), _fresh(rest)), *args, *static)
            with ops.formulation(formulation):
                return jax.value_and_grad(of_params, has_aux=has_aux)(params)
        return jax.jit(pure, static_argnums=(0, 3, 4), compiler_options=compiler_options(fast))

    _CACHES.append(jitted)

    def call(model, *args, static: tuple = ()):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        fast = _fast(params, args)
        out = jitted(fast)(graphdef, params, rest, tuple(static), ops.active_formulation(), *args)
        if fast and not _finite(out):
            # Under FAST_COMPILE (with or without YNNPACK's reduce fusion) jaxlib 0.10 returned NaN gradients,
            # float32 and float64, for a CBAM net (channel max and mean of one tensor, then a 7x7 conv;
            # tests/zoo/modern.py cbam_resnet) that XLA's default pipeline computes finite and exact (4e-15
            # from torch in float64; the de-optimised function is finite too): a check must not fail on the
            # compiler's shortcut, so a non-finite result is computed again without it.
            out = jitted(False)(graphdef, params, rest, tuple(static), ops.active_formulation(), *args)
        return out

    return call
