"""Family "layers": every recorded layer's output in both twins; a failure names the first layer
(in execution order) whose output diverges — the layer to look at, since later ones inherit it."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from parity.suite import tolerances, verdict
from parity.suite.forward import twin_runs
from parity.suite.results import Check
from parity.suite.twins import KeyMappingLike, ModulePair, module_pairs, path_str

FAMILY = "layers"


def layer_outputs(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray, *,
                  layer_pairs: Sequence[ModulePair] | None = None, mode: str = "eval",
                  dropout_pairs: Sequence[ModulePair] = (), dtype: str = "float32", torch_only: bool = False
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str]]:
    """(torch outputs, Flax outputs in Flax layout, torch names in the order their forward finished), from
    the forward family's run (`twin_runs`, dropout off), which `shared_runs` lets both families share."""
    _, t_layers, order, _, f_layers = twin_runs(torch_model, flax_model, key_map, x_nchw, mode=mode,
                                                dropout_pairs=dropout_pairs, dtype=dtype, torch_only=torch_only,
                                                layer_pairs=layer_pairs)
    return t_layers, f_layers, order


def layer_errors(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray, *,
                 layer_pairs: Sequence[ModulePair] | None = None, mode: str = "eval",
                 dropout_pairs: Sequence[ModulePair] = (), dtypes: Sequence[str] = ("float32",)
                 ) -> dict[str, list[dict]]:
    """Per dtype: [{layer, flax_path, error, torch_error, allowed, shape}] in the order the torch layers
    finished their forward; errors against torch float64, torch float32's own error the yardstick."""
    pairs = list(module_pairs(key_map) if layer_pairs is None else layer_pairs)
    flax_path = {n: tuple(p) for n, p in pairs}
    kw = dict(layer_pairs=pairs, mode=mode, dropout_pairs=dropout_pairs)
    exact, _, order = layer_outputs(torch_model, flax_model, key_map, x_nchw, dtype="float64", torch_only=True, **kw)
    own, _, _ = layer_outputs(torch_model, flax_model, key_map, x_nchw, dtype="float32", torch_only=True, **kw)
    out, flax32 = {}, {}
    for dtype in sorted(dtypes, key=lambda d: d != "float32"):  # float32 first: float64's yardstick reads it
        _, f_out, _ = layer_outputs(torch_model, flax_model, key_map, x_nchw, dtype=dtype, **kw)
        flax32 = f_out if dtype == "float32" else flax32
        rows = []
        for name in dict.fromkeys(order):  # a module called twice is compared on its last call
            t, f = exact[name], f_out.get(name)
            j = verdict.judge(f if f is not None else np.full(t.shape, np.inf), t, own[name], dtype=dtype,
                              floor=tolerances.forward(dtype), flax_f32=flax32.get(name))
            rows.append({"layer": name, "flax_path": path_str(flax_path[name]), "shape": list(t.shape),
                         **j.to_dict(), "passed": j.passed,
                         "note": "" if f is None or f.shape == t.shape else f"Flax shape {list(f.shape)}"})
        for name in flax_path:
            if name not in exact:
                rows.append({"layer": name, "flax_path": path_str(flax_path[name]), "shape": None, "error": math.inf,
                             "torch_error": 0.0, "allowed": tolerances.forward(dtype), "passed": False,
                             "note": "the torch module never ran"})
        out[dtype] = rows
    return out


def layer_checks(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray, *,
                 layer_pairs: Sequence[ModulePair] | None = None, modes: Sequence[str] = ("eval", "train"),
                 dropout_pairs: Sequence[ModulePair] = (), dtypes: Sequence[str] = ("float32",)) -> list[Check]:
    """One check per mode and dtype: the layer nearest its allowance; `where` is the first diverging layer."""
    out = []
    for mode in modes:
        per_dtype = layer_errors(torch_model, flax_model, key_map, x_nchw, layer_pairs=layer_pairs, mode=mode,
                                 dropout_pairs=dropout_pairs, dtypes=dtypes)
        for dtype, rows in per_dtype.items():
            worst = max(rows, key=lambda r: r["error"] / r["allowed"] if r["allowed"] else math.inf)
            first_bad = next((r for r in rows if not r["passed"]), None)
            where = (f"first diverging layer: {first_bad['layer']} ({first_bad['flax_path']})"
                     + (f", {first_bad['note']}" if first_bad["note"] else "")) if first_bad \
                else f"worst: {worst['layer']}"
            out.append(Check(FAMILY, f"{mode} mode, {len(rows)} layers [{dtype}]", worst["error"], worst["allowed"],
                             where, {"first_diverging": first_bad["layer"] if first_bad else None,
                                     "torch_error": worst["torch_error"], "reference": "torch float64",
                                     "allowed_rule": verdict.yardstick_note(dtype), "layers": rows}))
    return out
