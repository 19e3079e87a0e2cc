"""Family "forward": the logits of both twins on one batch — eval mode, train mode (batch-stat BN)
with dropout off, and train mode with the same dropout masks injected into both."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from parity.suite import tolerances, verdict
from parity.suite.masks import fixed_dropout
from parity.suite import shared
from parity.suite.record import run_flax, run_torch
from parity.suite.results import Check
from parity.suite.twins import (KeyMappingLike, ModulePair, flax_input, module_pairs, output_leaves, precision,
                                 prepare, to_flax_layout, torch_input, torch_output_leaves)

FAMILY = "forward"


def set_mode(torch_model: torch.nn.Module, flax_model, mode: str) -> None:
    if mode not in ("eval", "train"):
        raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
    torch_model.train(mode == "train")
    flax_model.train() if mode == "train" else flax_model.eval()


def twin_runs(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray, *, mode: str,
              dropout_pairs: Sequence[ModulePair] = (), masks: str = "off", seed: int = 0, dtype: str = "float32",
              torch_only: bool = False, layer_pairs: Sequence[ModulePair] | None = None) -> tuple:
    """One run of each twin from synced copies, recording `layer_pairs` (default: every key-map layer):
    (torch outputs, torch layer outputs in Flax layout, torch names in the order their forward finished,
    Flax outputs or None, Flax layer outputs). In train mode dropout is `masks` "off" or "same".
    Inside `shared.shared_runs()` the forward and layers families share each such run."""
    pairs = list(module_pairs(key_map) if layer_pairs is None else layer_pairs)
    key = ("twin_runs", id(torch_model), id(flax_model), shared.digest(x_nchw), mode, masks, seed, dtype, torch_only,
           tuple((n, tuple(p)) for n, p in pairs), tuple((n, tuple(p)) for n, p in dropout_pairs))

    def run():
        with precision(dtype):
            tm, fm = prepare(torch_model, flax_model, key_map, dtype, torch_only=torch_only)
            set_mode(tm, fm, mode)
            with fixed_dropout(tm, fm, dropout_pairs if mode == "train" else (), seed=seed, identity=masks == "off"):
                t, t_layers, order = run_torch(tm, torch_input(x_nchw, dtype), [n for n, _ in pairs])
                f, f_layers = (None, {}) if torch_only else run_flax(fm, flax_input(x_nchw, dtype), pairs)
        return (torch_output_leaves(t), {k: to_flax_layout(v) for k, v in t_layers.items()}, order,
                None if f is None else output_leaves(f), f_layers)

    return shared.memo(key, run)


def logits_pair(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray, *, mode: str,
                dropout_pairs: Sequence[ModulePair] = (), masks: str = "off", seed: int = 0,
                dtype: str = "float32", torch_only: bool = False, layer_pairs: Sequence[ModulePair] | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """(torch outputs, Flax outputs) of `twin_runs`, each {path: array} (`output_leaves`: one entry "" for
    a single tensor); a dense (N, C, H, W) output is compared in the Flax layout, NHWC."""
    t, _, _, f, _ = twin_runs(torch_model, flax_model, key_map, x_nchw, mode=mode, dropout_pairs=dropout_pairs,
                              masks=masks, seed=seed, dtype=dtype, torch_only=torch_only, layer_pairs=layer_pairs)
    return t, f


def _exact_and_torch32(torch_model, flax_model, key_map, x_nchw, **kw) -> tuple[dict, dict]:
    """(torch float64 logits — the exact reference —, torch float32 logits — the yardstick)."""
    exact, _ = logits_pair(torch_model, flax_model, key_map, x_nchw, dtype="float64", torch_only=True, **kw)
    own, _ = logits_pair(torch_model, flax_model, key_map, x_nchw, dtype="float32", torch_only=True, **kw)
    return exact, own


WHATS = ("eval mode (running stats)", "train mode (batch stats), dropout off")


def forward_checks(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray, *,
                   dropout_pairs: Sequence[ModulePair] = (), layer_pairs: Sequence[ModulePair] | None = None,
                   dtypes: Sequence[str] = ("float32",)) -> list[Check]:
    """Eval-mode and train-mode logits (dropout switched off at `dropout_pairs`, if any), per dtype,
    judged against torch float64 with torch float32's own error as the yardstick."""
    out = []
    for mode, what in zip(("eval", "train"), WHATS):
        kw = dict(mode=mode, dropout_pairs=dropout_pairs, layer_pairs=layer_pairs)
        exact, own = _exact_and_torch32(torch_model, flax_model, key_map, x_nchw, **kw)
        flax32 = None
        for dtype in sorted(dtypes, key=lambda d: d != "float32"):  # float32 first: float64's yardstick reads it
            _, f = logits_pair(torch_model, flax_model, key_map, x_nchw, dtype=dtype, **kw)
            flax32 = f if dtype == "float32" else flax32
            out += _checks(f"{what} [{dtype}]", f, exact, own, dtype, flax32)
    return out


def dropout_check(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray,
                  dropout_pairs: Sequence[ModulePair], *, seed: int = 0, dtype: str = "float32") -> Check:
    """Train-mode logits with the same dropout masks in both twins (use a pair with dropout > 0)."""
    kw = dict(mode="train", dropout_pairs=dropout_pairs, masks="same", seed=seed)
    exact, own = _exact_and_torch32(torch_model, flax_model, key_map, x_nchw, **kw)
    _, f = logits_pair(torch_model, flax_model, key_map, x_nchw, dtype=dtype, **kw)
    flax32 = f if dtype == "float32" else logits_pair(torch_model, flax_model, key_map, x_nchw, **kw)[1]
    rates = sorted({float(getattr(torch_model.get_submodule(n), "p", 0.0)) for n, _ in dropout_pairs})
    checks = _checks(f"train mode, same dropout masks (p={'/'.join(f'{r:g}' for r in rates)}) [{dtype}]", f, exact,
                     own, dtype, flax32)
    check = max(checks, key=lambda c: c.error / c.tol if c.tol else float(c.error > 0))
    return Check(check.family, check.name, check.error, check.tol, check.where,
                 dict(check.details, dropout_sites=len(dropout_pairs), rates=rates))


def _checks(name: str, f: dict, exact: dict, own: dict, dtype: str, flax32: dict | None) -> list[Check]:
    """One check per output: `name` alone for a single tensor, `name output['mask']` inside a tuple or dict
    (each judged on its own scale: a wrong small output is not hidden behind a large one)."""
    return [_check(f"{name} output{path}" if path else name,
                   f.get(path, np.full(ref.shape, np.inf)) if f is not None else np.full(ref.shape, np.inf),
                   ref, own[path], dtype, None if flax32 is None else flax32.get(path))
            for path, ref in exact.items()]


def _check(name: str, f: np.ndarray, exact: np.ndarray, own: np.ndarray, dtype: str, flax32=None) -> Check:
    j = verdict.judge(f, exact, own, dtype=dtype, floor=tolerances.forward(dtype), flax_f32=flax32)
    details = {"max_abs_logit": float(np.max(np.abs(exact))), "max_abs_diff": float(np.max(np.abs(f - exact)))
               if f.shape == exact.shape else None, "shape": list(exact.shape), **j.to_dict(),
               "reference": "torch float64", "allowed_rule": verdict.yardstick_note(dtype)}
    return Check(FAMILY, name, j.error, j.allowed, "" if j.passed else "logits (see family 'layers' for the first layer)",
                 details)
