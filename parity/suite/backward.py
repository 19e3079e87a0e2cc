"""The backward-order locator: which layer's backward makes a gradient diverge.

The `layers` family names the first layer whose *forward* output diverges; a wrong backward (a
custom VJP, a lost digit in a reduction) leaves every forward output right. Here each layer's
input gets a zero "nudge" added in both twins (a forward pre-hook in torch, a wrapper in Flax), so
d loss / d nudge is d loss / d (layer input). Walking from the loss back, the first layer whose
input gradient is off (against torch float64, torch float32's own error the yardstick) is the one
whose backward is wrong: its output gradient — the input gradient of what comes after it — was fine.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from parity.suite.loss import flax_labels, flax_loss, torch_loss
from parity.suite import tolerances, verdict
from parity.suite.forward import set_mode
from parity.suite.masks import fixed_dropout
from parity.suite.twins import (KeyMappingLike, ModulePair, flax_get, flax_input, module_pairs, precision, prepare,
                                swapped_flax, to_flax_layout, torch_input)


class Nudge(nnx.Variable):
    """A zero added to a layer's input: its gradient is the loss's gradient w.r.t. that input."""


class Nudged(nnx.Module):
    def __init__(self, inner, shape: tuple[int, ...], dtype):
        self.inner = inner
        self.nudge = Nudge(jnp.zeros(shape, dtype))

    def __call__(self, x, *args, **kwargs):
        nudge = self.nudge.get_value()
        if x.shape != nudge.shape:  # a module shared between call sites: only calls shaped like the first get it
            return self.inner(x, *args, **kwargs)
        return self.inner(x + nudge, *args, **kwargs)


@contextlib.contextmanager
def _torch_nudges(model: torch.nn.Module, names: Sequence[str]) -> Iterator[tuple[dict, list]]:
    """({name: nudge tensor}, names in first-call order); a module called twice shares one nudge."""
    nudges: dict[str, torch.Tensor] = {}
    order: list[str] = []

    def pre(name):
        def hook(_mod, args):
            x = args[0]
            if not isinstance(x, torch.Tensor):
                return None
            if name not in nudges:
                nudges[name] = torch.zeros_like(x, requires_grad=True)
                order.append(name)
            if nudges[name].shape != x.shape:
                return None
            return (x + nudges[name], *args[1:])
        return hook

    handles = [model.get_submodule(n).register_forward_pre_hook(pre(n)) for n in names]
    try:
        yield nudges, order
    finally:
        for h in handles:
            h.remove()


def _torch_input_grads(torch_model, x_nchw, labels, names, *, label_smoothing, dtype):
    with _torch_nudges(torch_model, names) as (nudges, order):
        loss = torch_loss(torch_model(torch_input(x_nchw, dtype)), labels,
                               label_smoothing=label_smoothing)
        loss.backward()
    return {n: to_flax_layout(nudges[n].grad.detach().numpy().copy()) for n in order if nudges[n].grad is not None}, order


def input_gradients(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray,
                    labels: np.ndarray, *, layer_pairs: Sequence[ModulePair] | None = None, label_smoothing: float = 0.0,
                    dropout_pairs: Sequence[ModulePair] = (), dtype: str = "float32", torch_only: bool = False
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str]]:
    """(torch d loss / d input per layer, Flax's, layer names in first-call order), train mode, Flax layout."""
    pairs = list(module_pairs(key_map) if layer_pairs is None else layer_pairs)
    with precision(dtype):
        tm, fm = prepare(torch_model, flax_model, key_map, dtype, torch_only=torch_only)
        set_mode(tm, fm, "train")
        with fixed_dropout(tm, fm, dropout_pairs, identity=True):
            t_grads, order = _torch_input_grads(tm, x_nchw, labels, [n for n, _ in pairs],
                                                label_smoothing=label_smoothing, dtype=dtype)
            if torch_only:
                return t_grads, {}, order
            path = dict(pairs)
            wrappers = {tuple(path[n]): Nudged(flax_get(fm, tuple(path[n])), t_grads[n].shape, jnp.dtype(dtype))
                        for n in t_grads}

            def loss_fn(m, x, y):
                return flax_loss(m(x), y, label_smoothing)

            with swapped_flax(fm, wrappers):
                grads = nnx.jit(nnx.grad(loss_fn, argnums=nnx.DiffState(0, Nudge)))(
                    fm, flax_input(x_nchw, dtype), flax_labels(labels))
            by_path = {tuple(p[:-1]): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(grads)}
            f_grads = {n: by_path[tuple(path[n])] for n in t_grads if tuple(path[n]) in by_path}
    return t_grads, f_grads, order


def locate(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray, labels: np.ndarray, *,
           layer_pairs: Sequence[ModulePair] | None = None, dtypes: Sequence[str] = ("float32",),
           label_smoothing: float = 0.0, dropout_pairs: Sequence[ModulePair] = ()) -> str:
    """'first diverging input gradient walking back from the loss: <layer>' (or that none diverges)."""
    kw = dict(layer_pairs=layer_pairs, label_smoothing=label_smoothing, dropout_pairs=dropout_pairs)
    try:
        exact, _, order = input_gradients(torch_model, flax_model, key_map, x_nchw, labels, dtype="float64",
                                          torch_only=True, **kw)
        own, _, _ = input_gradients(torch_model, flax_model, key_map, x_nchw, labels, dtype="float32",
                                    torch_only=True, **kw)
        dtype = dtypes[0] if dtypes else "float32"
        _, flax, _ = input_gradients(torch_model, flax_model, key_map, x_nchw, labels, dtype=dtype, **kw)
    except Exception as e:  # noqa: BLE001 - the locator is a diagnosis; its failure must not hide the check
        return f"backward locator could not run ({type(e).__name__}: {e})"
    for name in reversed(order):
        if name not in flax or (not np.any(flax[name]) and np.any(own[name])):
            continue  # a zero nudge gradient: the ported program runs that layer as a function, not the module
        j = verdict.judge(flax[name], exact[name], own[name], dtype=dtype, floor=tolerances.gradient(dtype))
        if not j.passed:
            return (f"first diverging input gradient walking back from the loss: {name} "
                    f"({j.error:.2e} vs torch float32's own {j.torch_error:.2e}) [{dtype}]")
    return "no layer's input gradient diverges (the parameter gradient itself is off)"
