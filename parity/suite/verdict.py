"""The verdict with a yardstick: is the Flax result as close to the exact one as torch's own?

A fixed tolerance alone cannot judge float32: on an ill-conditioned input (train-mode BatchNorm
over 8 values per channel, a ReLU kink, a weight gradient summing thousands of nearly cancelling
terms) a correct port is 1e-2 off the exact result — and so is torch itself. So every float32
result is measured against the exact one (torch in float64), and torch's own float32 distance to
it is the yardstick: PASS when the Flax error is within `tolerances.YARDSTICK_FACTOR` times torch's
own error, or below the family's floor. A real weakness (or a wrong port) is still caught: it is
materially worse than torch on the same input. In float64 the exact reference is torch's float64
result itself, and torch's own float64 error is estimated from its float32 error scaled by the
ratio of the unit roundoffs (rounding error is linear in it to first order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from parity.suite import tolerances
from parity.suite.results import rel_err


@dataclass(frozen=True)
class Judged:
    """One compared item: the Flax error against the exact result, torch's own, what is allowed.

    `torch_error` is torch's own error in the item's dtype: measured in float32, estimated in
    float64 (its float32 error × 2^-29)."""

    error: float
    torch_error: float
    allowed: float

    @property
    def passed(self) -> bool:
        return math.isfinite(self.error) and self.error <= self.allowed

    @property
    def ratio(self) -> float:
        """error / allowed: > 1 fails; the item with the largest ratio is the one a check reports."""
        return self.error / self.allowed if self.allowed > 0 else (0.0 if self.error == 0 else math.inf)

    def to_dict(self) -> dict:
        return {"error": self.error, "torch_error": self.torch_error, "allowed": self.allowed}


def own_error(torch_f32_error: float, dtype: str) -> float:
    """torch's own error in `dtype`: measured in float32, scaled by 2^-29 for float64."""
    own = torch_f32_error if dtype == "float32" else torch_f32_error * tolerances.FLOAT64_PER_FLOAT32
    return own if math.isfinite(own) else 0.0  # a torch float32 overflow is no licence for the port


def judged(error: float, torch_f32_error: float, *, dtype: str, floor: float) -> Judged:
    """What a port may be off the exact result: `YARDSTICK_FACTOR` × torch's own error in `dtype`, at least `floor`."""
    own = own_error(torch_f32_error, dtype)
    return Judged(error, own, max(tolerances.YARDSTICK_FACTOR * own, floor))


def judge(flax, exact, torch_f32, *, dtype: str, floor: float) -> Judged:
    """`flax` (in `dtype`) against `exact` (torch float64), with torch float32's own error as the yardstick."""
    return judged(rel_err(flax, exact), rel_err(torch_f32, exact), dtype=dtype, floor=floor)


def worst(items: dict[str, Judged]) -> tuple[str, Judged]:
    """The item closest to (or furthest past) its allowance."""
    return max(items.items(), key=lambda kv: kv[1].ratio)


def yardstick_note(dtype: str) -> str:
    f = tolerances.YARDSTICK_FACTOR
    return (f"allowed = max({f:g} × torch float32's own error, floor)" if dtype == "float32" else
            f"allowed = max({f:g} × torch float32's own error × 2^-29, floor)")
