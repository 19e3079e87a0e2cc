"""Family "batchnorm": BN running statistics after k train-mode forward passes on k batches.

Parity traps this family catches, by name: torch's `momentum=0.1` is Flax's `0.9` (the weight of
the *old* value), and torch updates `running_var` with the *unbiased* batch variance
(n/(n-1) times the biased one it normalises with) where Flax's stock BatchNorm uses the biased
one; `flax_cnn.model.layers.BatchNorm2d(unbiased_running_var=True)` follows torch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from parity.suite import tolerances, verdict
from parity.suite.forward import set_mode
from parity.suite.masks import fixed_dropout
from parity.suite.record import flax_calls, run_torch
from parity.suite.results import Check
from parity.suite.twins import (KeyMappingLike, ModulePair, flax_input, flax_tensors, module_pairs, precision, prepare,
                                torch_input)

FAMILY = "batchnorm"


def buffers_after_steps(torch_model, flax_model, key_map: Sequence[KeyMappingLike], batches: Sequence[np.ndarray], *,
                        dropout_pairs: Sequence[ModulePair] = (), layer_pairs: Sequence[ModulePair] | None = None,
                        dtype: str = "float32", torch_only: bool = False
                        ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(torch buffers, Flax buffers in torch naming) after one train-mode forward per batch (the Flax
    run records `layer_pairs` as the `layers` family does, to share its compilation)."""
    pairs = list(module_pairs(key_map) if layer_pairs is None else layer_pairs)
    with precision(dtype):
        tm, fm = prepare(torch_model, flax_model, key_map, dtype, torch_only=torch_only)
        set_mode(tm, fm, "train")
        with fixed_dropout(tm, fm, dropout_pairs, identity=True), flax_calls(fm, pairs) as flax_call:
            for x in batches:
                run_torch(tm, torch_input(x, dtype))
                if not torch_only:
                    flax_call(flax_input(x, dtype))
        params = {k for k, _ in tm.named_parameters()}
        t = {k: v.detach().numpy().copy() for k, v in tm.state_dict().items() if k not in params}
        f = {} if torch_only else flax_tensors(fm, [m for m in key_map if m.torch_key in t])
    return t, f


def batchnorm_checks(torch_model, flax_model, key_map: Sequence[KeyMappingLike], batches: Sequence[np.ndarray], *,
                     dropout_pairs: Sequence[ModulePair] = (), layer_pairs: Sequence[ModulePair] | None = None,
                     dtypes: Sequence[str] = ("float32",)) -> list[Check]:
    """Running statistics (the buffer nearest its allowance, the first one off with the likely trap)
    against torch float64, torch float32's own error the yardstick; batch counters exact."""
    kw = dict(dropout_pairs=dropout_pairs, layer_pairs=layer_pairs)
    exact, _ = buffers_after_steps(torch_model, flax_model, key_map, batches, dtype="float64", torch_only=True, **kw)
    own, _ = buffers_after_steps(torch_model, flax_model, key_map, batches, dtype="float32", torch_only=True, **kw)
    k = len(batches)
    out, flax32 = [], {}
    for dtype in sorted(dtypes, key=lambda d: d != "float32"):  # float32 first: float64's yardstick reads it
        _, f = buffers_after_steps(torch_model, flax_model, key_map, batches, dtype=dtype, **kw)
        flax32 = f if dtype == "float32" else flax32
        stats, counters = [], []
        for name, t in exact.items():
            if name not in f:
                continue
            if np.issubdtype(t.dtype, np.floating):
                j = verdict.judge(f[name], t, own[name], dtype=dtype, floor=tolerances.batchnorm(dtype),
                                  flax_f32=flax32.get(name))
                stats.append({"buffer": name, **j.to_dict(), "passed": j.passed, "ratio": j.ratio})
            else:
                counters.append({"buffer": name, "torch": int(np.max(t)), "jax": int(np.max(f[name])),
                                 "error": float(np.max(np.abs(f[name].astype(np.int64) - t.astype(np.int64))))})
        if stats:
            worst = max(stats, key=lambda r: r["ratio"])
            bad = [r for r in stats if not r["passed"]]
            where = f"first buffer off: {bad[0]['buffer']}{_diagnose(bad)}" if bad else f"worst: {worst['buffer']}"
            out.append(Check(FAMILY, f"running statistics after {k} train steps, {len(stats)} buffers [{dtype}]",
                             worst["error"], worst["allowed"], where,
                             {"buffers": stats, "torch_error": worst["torch_error"], "reference": "torch float64",
                              "allowed_rule": verdict.yardstick_note(dtype)}))
        if counters and dtype == dtypes[0]:
            worst_c = max(counters, key=lambda r: r["error"])
            out.append(Check(FAMILY, f"batch counters after {k} train steps", worst_c["error"], 0.0,
                             "" if worst_c["error"] == 0 else f"first counter off: {worst_c['buffer']}",
                             {"buffers": counters}))
    return out


def _diagnose(bad: list[dict]) -> str:
    """Name the trap the pattern of failures points at."""
    names = [r["buffer"] for r in bad]
    if names and all(n.endswith("var") for n in names):
        return " (only variances off: biased vs unbiased batch variance in the running_var update?)"
    if any(n.endswith("mean") for n in names):
        return " (means off too: BN momentum convention? torch 0.1 == Flax 0.9)"
    return ""
