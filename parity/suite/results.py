"""What a parity check measured: `Check` (one number against one tolerance) and `Report` (all of them).

Every check is phrased as "error ≤ tolerance" — agreement percentages become disagreement — so
one table shape fits every family and a failure is always a number that is too big.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FAMILIES: tuple[str, ...] = ("forward", "layers", "gradient", "batchnorm", "schedule", "trajectory", "accuracy",
                             "bf16")


def rel_err(ours, ref) -> float:
    """max|ours - ref| / max|ref|: the error relative to the tensor's scale, not per element.

    Per-element relative error is meaningless for entries near zero (a gradient of 1e-12 vs
    2e-12 is "100 % off" but harmless); scaling by the tensor's largest entry is not. A shape
    mismatch or a non-finite value is an infinite error; an all-zero reference gives the
    absolute error.
    """
    a, b = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    diff = float(np.max(np.abs(a - b)))
    if not math.isfinite(diff):
        return math.inf
    scale = float(np.max(np.abs(b)))
    return diff / scale if scale > 0 else diff


def elementwise_rel_err(ours, ref) -> float:
    """max |ours - ref| / |ref| per entry (for strictly positive sequences such as learning rates)."""
    a, b = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    if a.shape != b.shape:
        return math.inf
    err = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.finfo(np.float64).tiny), initial=0.0))
    return err if math.isfinite(err) else math.inf


@dataclass(frozen=True)
class Check:
    """One measured error against its tolerance; `where` names the first layer/step/tensor that diverged."""

    family: str
    name: str
    error: float
    tol: float
    where: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False

    @property
    def passed(self) -> bool:
        return self.skipped or (math.isfinite(self.error) and self.error <= self.tol)

    @property
    def status(self) -> str:
        return "skip" if self.skipped else "pass" if self.passed else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "name": self.name, "error": _json_float(self.error), "tol": self.tol,
                "passed": self.passed, "status": self.status, "where": self.where, "details": _jsonable(self.details)}


def skipped(family: str, name: str, why: str) -> Check:
    """A check that could not run here (e.g. no test data); it does not fail the suite."""
    return Check(family, name, math.nan, math.nan, where=why, skipped=True)


@dataclass
class Report:
    """Every check of a suite run, the trajectory's curves, and notes on what was compared."""

    checks: list[Check] = field(default_factory=list)
    curves: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self, family: str | None = None) -> list[Check]:
        return [c for c in self.checks if not c.passed and (family is None or c.family == family)]

    def failed_families(self) -> list[str]:
        """Families with at least one failing check, in suite order."""
        bad = {c.family for c in self.failures()}
        return [f for f in FAMILIES if f in bad] + sorted(bad - set(FAMILIES))

    def family(self, name: str) -> list[Check]:
        return [c for c in self.checks if c.family == name]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "failed_families": self.failed_families(), "meta": _jsonable(self.meta),
                "notes": list(self.notes), "checks": [c.to_dict() for c in self.checks],
                "curves": _jsonable(self.curves)}


def _json_float(x: float) -> float | str | None:
    """JSON has no inf/nan: write them as strings so the file stays standard JSON."""
    x = float(x)
    return x if math.isfinite(x) else ("nan" if math.isnan(x) else "inf")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _json_float(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj if obj is None or isinstance(obj, str) else str(obj)
