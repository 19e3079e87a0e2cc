"""ReLU kink flips: an activation exactly zero on one side and not on the other.

Parity trap: a pre-activation within float32 rounding of zero (|x| ~ 1e-7) can land on the other
side of the ReLU kink than its exact value. The forward outputs still agree to 1e-7, but that
unit's derivative is 1 on one side and 0 on the other, so every gradient below it differs by
~1e-4 (measured on the real model: one flip in 500k activations at features.c2.1). That is
float32 rounding, not a difference in the model (float64 agrees to 1e-14), so the float32
gradient check is only meaningful on a batch where neither twin's float32 forward has a flip
against the exact (float64) one; `smooth_batch` finds one.
"""

from __future__ import annotations

import copy
from typing import Callable, Protocol, Sequence

import numpy as np

from parity.suite.compiled import module_jit
from parity.suite.forward import set_mode
from parity.suite.masks import fixed_dropout
from parity.suite.record import flax_calls, run_torch
from parity.suite.twins import (KeyMappingLike, ModulePair, flax_input, module_pairs, prepare, to_flax_layout,
                                torch_input)


def _is_zero(a: np.ndarray) -> np.ndarray:
    """Zero as float32 sees it: subnormals (and float64 values below float32's range) count."""
    return np.abs(a) < np.finfo(np.float32).tiny if np.issubdtype(a.dtype, np.floating) else a == 0


def count_flips(torch_out: dict[str, np.ndarray], flax_out: dict[str, np.ndarray]) -> dict[str, int]:
    """Per layer: entries zero in one twin's output and nonzero in the other's.

    Subnormals count as zero: XLA:CPU flushes them to zero and torch keeps them, so a dead channel
    can read 0 in one twin and 1e-40 in the other, which is no kink flip and changes no gradient.
    """
    flips = {}
    for name, t in torch_out.items():
        f = flax_out.get(name)
        t = to_flax_layout(t)
        if f is not None and f.shape == t.shape:
            n = int(np.sum(_is_zero(t) != _is_zero(f)))
            if n:
                flips[name] = n
    return flips


class KinkProbe(Protocol):
    """Reads the inputs of every kink op (a ported model knows them all, functional ReLUs included)."""

    value_names: tuple[str, ...]
    read_locals: Callable
    """(module, x, names) -> (output, {name: value}): the forward's locals (`parity.port.values`)."""

    def torch_inputs(self, torch_model, x_nchw: np.ndarray, dtype: str) -> dict[str, np.ndarray]: ...
    def flax_inputs(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
    def flips(self, exact: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, int]: ...


def _values(m, x, names, read_locals):
    return read_locals(m, x, names)[1]


_flax_values = module_jit(_values)


def smooth_batch(torch_model, flax_model, key_map: Sequence[KeyMappingLike], batches: Sequence[tuple], *,
                 layer_pairs: Sequence[ModulePair] | None = None, dropout_pairs: Sequence[ModulePair] = (),
                 label_smoothing: float = 0.0, max_tries: int = 8,
                 probe: KinkProbe | None = None) -> tuple[int, list[dict]]:
    """(index of the best-conditioned (images, labels) batch on which neither twin's float32 train-mode
    forward has a kink flip against torch's float64 one, what each tried batch showed).

    Conditioning is measured, not guessed: torch float32's own gradient error on the batch
    (`gradient.torch_conditioning`). If every batch flips, the best one on which the Flax twin (the
    one the check judges) does not, else the best-conditioned one; the check's `where` says so.
    Flips are counted at the recorded layers' outputs, or at every kink op's input with a `probe`.
    """
    from parity.suite.gradient import torch_conditioning

    pairs = list(module_pairs(key_map) if layer_pairs is None else layer_pairs)
    names = [n for n, _ in pairs]
    tm, fm = prepare(torch_model, flax_model, key_map)
    set_mode(tm, fm, "train")
    tried = []
    with fixed_dropout(tm, fm, dropout_pairs, identity=True), flax_calls(fm, pairs) as flax_call:
        exact = copy.deepcopy(tm).double()  # torch in float64, dropout sites already swapped
        for i, (x, _) in enumerate(batches[:max_tries]):
            if probe is not None:
                ref = probe.torch_inputs(exact, x, "float64")
                values = _flax_values(fm, flax_input(x, "float32"), static=(probe.value_names, probe.read_locals))
                jax_flips = probe.flips(ref, probe.flax_inputs({k: np.asarray(v) for k, v in values.items()}))
                torch_flips = probe.flips(ref, probe.torch_inputs(tm, x, "float32"))
            else:
                _, ref, _ = run_torch(exact, torch_input(x, "float64"), names)
                _, t_out, _ = run_torch(tm, torch_input(x, "float32"), names)
                _, f_out = flax_call(flax_input(x, "float32"))
                jax_flips = count_flips(ref, f_out)
                torch_flips = count_flips(ref, {k: to_flax_layout(v) for k, v in t_out.items()})
            layers = {f"{k} (jax)": n for k, n in jax_flips.items()} | {f"{k} (torch)": n for k, n in torch_flips.items()}
            tried.append({"batch": i, "flips": sum(layers.values()), "layers": layers,
                          "jax_flips": sum(jax_flips.values())})
    for t, (x, y) in zip(tried, batches):
        t["torch_error"] = torch_conditioning(torch_model, flax_model, key_map, x, y, label_smoothing=label_smoothing,
                                              dropout_pairs=dropout_pairs)
    return choose_batch(tried), tried


def choose_batch(tried: Sequence[dict]) -> int:
    """The best-conditioned batch where neither twin flips, else where the Flax twin (the one the
    check judges) does not, else the best-conditioned one."""
    return ranked_batches(tried)[0] if tried else 0


def ranked_batches(tried: Sequence[dict]) -> list[int]:
    """Every tried batch, best first: no flips in either twin, then none in the Flax twin, then the
    rest; within each, best-conditioned first."""
    def rank(t):
        return (0 if not t["flips"] else 1 if not t["jax_flips"] else 2, t.get("torch_error", 0.0))
    return [t["batch"] for t in sorted(tried, key=rank)]
