"""Run either twin once and keep named module outputs: torch by forward hooks, Flax by wrappers.

Flax modules are swapped for `FlaxRecorder`s that pass their input through and leave the output
in a sink; the call is jitted, so the sink holds tracers only inside the traced function, which
returns them as outputs. One jitted function for every caller (`compiled.module_jit`), cached by
the model's graph: the families that run the same model in the same mode, recording the same
layers (forward, layers, kink detection, BatchNorm steps), share one compile per dtype and shape.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import jax
import numpy as np
import torch
from flax import nnx

from parity.suite.compiled import module_jit
from parity.suite.twins import ModulePair, flax_get, swapped_flax


_SINK: dict[str, object] = {}
"""Outputs recorded while `_traced` traces, by torch module name (process-wide: not part of any graph)."""


class FlaxRecorder(nnx.Module):
    """Calls the wrapped module and records its output under `name`."""

    def __init__(self, inner, name: str):
        self.inner, self.name = inner, name

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        _SINK[self.name] = out
        return out


def _recorded(m, x):
    _SINK.clear()
    y = m(x)
    out = dict(_SINK)
    _SINK.clear()
    return y, out


_traced = module_jit(_recorded)


@contextlib.contextmanager
def flax_calls(model, record: Sequence[ModulePair] = ()) -> Iterator[Callable]:
    """Yields `call(x) -> (output, {torch name: Flax output})`, jitted (compiled once per graph and shape).

    BN statistics of the model update in train mode, as an eager call would update them.
    """
    wrappers = {tuple(path): FlaxRecorder(flax_get(model, tuple(path)), name) for name, path in record}

    def call(x: jax.Array) -> tuple[object, dict[str, np.ndarray]]:
        y, rec = _traced(model, x)
        return jax.tree.map(np.asarray, y), {k: np.asarray(v) for k, v in rec.items()}  # y: a tuple/dict of them too

    with swapped_flax(model, wrappers):
        yield call


def run_flax(model, x: jax.Array, record: Sequence[ModulePair] = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One call of `flax_calls`."""
    with flax_calls(model, record) as call:
        return call(x)


def run_torch(model: torch.nn.Module, x: torch.Tensor, record: Sequence[str] = (), *, grad: bool = False
              ) -> tuple[torch.Tensor, dict[str, np.ndarray], list[str]]:
    """(output, {name: output}, names in the order their forward finished) of one call."""
    outputs: dict[str, np.ndarray] = {}
    order: list[str] = []

    def hook(name):
        def f(_mod, _inp, out):
            if isinstance(out, torch.Tensor):
                outputs[name] = out.detach().cpu().numpy().copy()
                order.append(name)
        return f

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in record]
    try:
        with torch.set_grad_enabled(grad):
            y = model(x)
    finally:
        for h in handles:
            h.remove()
    return y, outputs, order
