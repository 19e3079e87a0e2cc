"""Family "forward": the logits of both twins on one batch — eval mode, train mode (batch-stat BN)
with dropout off, and train mode with the same dropout masks injected into both."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from parity.suite import tolerances
from parity.suite.masks import fixed_dropout
from parity.suite.record import run_flax, run_torch
from parity.suite.results import Check, rel_err
from parity.suite.twins import KeyMappingLike, ModulePair, flax_input, precision, prepare, torch_input

FAMILY = "forward"


def set_mode(torch_model: torch.nn.Module, flax_model, mode: str) -> None:
    if mode not in ("eval", "train"):
        raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
    torch_model.train(mode == "train")
    flax_model.train() if mode == "train" else flax_model.eval()


def logits_pair(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray, *, mode: str,
                dropout_pairs: Sequence[ModulePair] = (), masks: str = "off", seed: int = 0,
                dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """(torch logits, Flax logits) from synced copies; in train mode dropout is `masks` "off" or "same"."""
    with precision(dtype):
        tm, fm = prepare(torch_model, flax_model, key_map, dtype)
        set_mode(tm, fm, mode)
        with fixed_dropout(tm, fm, dropout_pairs if mode == "train" else (), seed=seed, identity=masks == "off"):
            t, _, _ = run_torch(tm, torch_input(x_nchw, dtype))
            f, _ = run_flax(fm, flax_input(x_nchw, dtype))
    return t.numpy(), f


def forward_checks(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray, *,
                   dropout_pairs: Sequence[ModulePair] = (), dtype: str = "float32",
                   tol: float | None = None) -> list[Check]:
    """Eval-mode and train-mode logits (dropout switched off at `dropout_pairs`, if any)."""
    tol = tolerances.forward(dtype) if tol is None else tol
    out = []
    for mode, what in (("eval", "eval mode (running stats)"), ("train", "train mode (batch stats), dropout off")):
        t, f = logits_pair(torch_model, flax_model, key_map, x_nchw, mode=mode, dropout_pairs=dropout_pairs,
                           dtype=dtype)
        out.append(_check(f"{what} [{dtype}]", t, f, tol))
    return out


def dropout_check(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray,
                  dropout_pairs: Sequence[ModulePair], *, seed: int = 0, dtype: str = "float32",
                  tol: float | None = None) -> Check:
    """Train-mode logits with the same dropout masks in both twins (use a pair with dropout > 0)."""
    tol = tolerances.forward(dtype) if tol is None else tol
    t, f = logits_pair(torch_model, flax_model, key_map, x_nchw, mode="train", dropout_pairs=dropout_pairs,
                       masks="same", seed=seed, dtype=dtype)
    rates = sorted({float(getattr(torch_model.get_submodule(n), "p", 0.0)) for n, _ in dropout_pairs})
    check = _check(f"train mode, same dropout masks (p={'/'.join(f'{r:g}' for r in rates)}) [{dtype}]", t, f, tol)
    return Check(check.family, check.name, check.error, check.tol, check.where,
                 dict(check.details, dropout_sites=len(dropout_pairs), rates=rates))


def _check(name: str, t: np.ndarray, f: np.ndarray, tol: float) -> Check:
    err = rel_err(f, t)
    details = {"max_abs_logit": float(np.max(np.abs(t))), "max_abs_diff": float(np.max(np.abs(f - t)))
               if f.shape == t.shape else None, "shape": list(t.shape)}
    return Check(FAMILY, name, err, tol, "" if err <= tol else "logits (see family 'layers' for the first layer)",
                 details)
