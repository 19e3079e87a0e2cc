"""ReLU kink flips: an activation exactly zero in one twin and not in the other.

Parity trap: a pre-activation within float32 rounding of zero (|x| ~ 1e-7) can land on opposite
sides of the ReLU kink in the two frameworks. The forward outputs still agree to 1e-7, but that
unit's derivative is 1 in one twin and 0 in the other, so every gradient below it differs by
~1e-4 (measured on the real model: one flip in 500k activations at features.c2.1). That is
float32 rounding, not a difference in the model (float64 agrees to 1e-14), so a float32
gradient comparison is only meaningful on a batch without flips; `smooth_batch` finds one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from parity.suite.forward import set_mode
from parity.suite.masks import fixed_dropout
from parity.suite.record import flax_calls, run_torch
from parity.suite.twins import (KeyMappingLike, ModulePair, flax_input, module_pairs, prepare, to_flax_layout,
                                torch_input)


def _is_zero(a: np.ndarray) -> np.ndarray:
    return np.abs(a) < np.finfo(a.dtype).tiny if np.issubdtype(a.dtype, np.floating) else a == 0


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


def smooth_batch(torch_model, flax_model, key_map: Sequence[KeyMappingLike], batches: Sequence[np.ndarray], *,
                 layer_pairs: Sequence[ModulePair] | None = None, dropout_pairs: Sequence[ModulePair] = (),
                 max_tries: int = 8) -> tuple[int, list[dict]]:
    """(index of the first batch with no kink flip in float32 train mode, what each tried batch showed).

    Falls back to batch 0 if none of the first `max_tries` is clean (the check then reports it).
    """
    pairs = list(module_pairs(key_map) if layer_pairs is None else layer_pairs)
    tm, fm = prepare(torch_model, flax_model, key_map)
    set_mode(tm, fm, "train")
    tried = []
    with fixed_dropout(tm, fm, dropout_pairs, identity=True), flax_calls(fm, pairs) as flax_call:
        for i, x in enumerate(batches[:max_tries]):
            _, t_out, _ = run_torch(tm, torch_input(x, "float32"), [n for n, _ in pairs])
            _, f_out = flax_call(flax_input(x, "float32"))
            flips = count_flips(t_out, f_out)
            tried.append({"batch": i, "flips": sum(flips.values()), "layers": flips})
            if not flips:
                return i, tried
    return 0, tried
