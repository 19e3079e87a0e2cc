"""Family "layers": every recorded layer's output in both twins; a failure names the first layer
(in execution order) whose output diverges — the layer to look at, since later ones inherit it."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from parity.suite import tolerances
from parity.suite.forward import set_mode
from parity.suite.masks import fixed_dropout
from parity.suite.record import run_flax, run_torch
from parity.suite.results import Check, rel_err
from parity.suite.twins import (KeyMappingLike, ModulePair, flax_input, module_pairs, path_str, precision, prepare,
                                to_flax_layout, torch_input)

FAMILY = "layers"


def layer_errors(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray, *,
                 layer_pairs: Sequence[ModulePair] | None = None, mode: str = "eval",
                 dropout_pairs: Sequence[ModulePair] = (), dtype: str = "float32") -> list[dict]:
    """[{layer, flax_path, error, shape}] in the order the torch layers finished their forward."""
    pairs = list(module_pairs(key_map) if layer_pairs is None else layer_pairs)
    flax_path = {n: tuple(p) for n, p in pairs}
    with precision(dtype):
        tm, fm = prepare(torch_model, flax_model, key_map, dtype)
        set_mode(tm, fm, mode)
        with fixed_dropout(tm, fm, dropout_pairs if mode == "train" else (), identity=True):
            _, t_out, order = run_torch(tm, torch_input(x_nchw, dtype), [n for n, _ in pairs])
            _, f_out = run_flax(fm, flax_input(x_nchw, dtype), pairs)
    rows = []
    for name in dict.fromkeys(order):  # a module called twice is compared on its last call
        t = to_flax_layout(t_out[name])
        f = f_out.get(name)
        rows.append({"layer": name, "flax_path": path_str(flax_path[name]), "shape": list(t.shape),
                     "error": math.inf if f is None else rel_err(f, t),
                     "note": "" if f is None else "" if f.shape == t.shape else f"Flax shape {list(f.shape)}"})
    for name in flax_path:
        if name not in t_out:
            rows.append({"layer": name, "flax_path": path_str(flax_path[name]), "shape": None,
                         "error": math.inf, "note": "the torch module never ran"})
    return rows


def layer_checks(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray, *,
                 layer_pairs: Sequence[ModulePair] | None = None, modes: Sequence[str] = ("eval", "train"),
                 dropout_pairs: Sequence[ModulePair] = (), dtype: str = "float32",
                 tol: float | None = None) -> list[Check]:
    """One check per mode: the worst layer's error; `where` is the first diverging layer, if any."""
    tol = tolerances.forward(dtype) if tol is None else tol
    out = []
    for mode in modes:
        rows = layer_errors(torch_model, flax_model, key_map, x_nchw, layer_pairs=layer_pairs, mode=mode,
                            dropout_pairs=dropout_pairs, dtype=dtype)
        worst = max(rows, key=lambda r: r["error"])
        first_bad = next((r for r in rows if not r["error"] <= tol), None)
        where = (f"first diverging layer: {first_bad['layer']} ({first_bad['flax_path']})"
                 + (f", {first_bad['note']}" if first_bad["note"] else "")) if first_bad else f"worst: {worst['layer']}"
        out.append(Check(FAMILY, f"{mode} mode, {len(rows)} layers [{dtype}]", worst["error"], tol, where,
                         {"first_diverging": first_bad["layer"] if first_bad else None, "layers": rows}))
    return out
