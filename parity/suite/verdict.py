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

    `torch_error` is the yardstick in the item's dtype: torch's own error measured in float32; in
    float64 the conditioning estimate (torch's and the Flax twin's float32 errors) × 2^-29."""

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


def own_error(torch_f32_error: float, dtype: str, flax_f32_error: float = 0.0) -> float:
    """The yardstick in `dtype`: torch's float32 error; for float64 both float32 errors × 2^-29."""
    own = torch_f32_error if dtype == "float32" else \
        (torch_f32_error + flax_f32_error) * tolerances.FLOAT64_PER_FLOAT32
    return own if math.isfinite(own) else 0.0  # a float32 overflow is no licence for the port


def judged(error: float, torch_f32_error: float, *, dtype: str, floor: float, flax_f32_error: float = 0.0) -> Judged:
    """What a port may be off the exact result: `YARDSTICK_FACTOR` × the yardstick in `dtype`, at least `floor`.

    `flax_f32_error` (float64 items only) is the Flax twin's float32 error on the same item; the
    float32 verdict has already held it to torch's."""
    own = own_error(torch_f32_error, dtype, flax_f32_error)
    return Judged(error, own, max(tolerances.YARDSTICK_FACTOR * own, floor))


def judge(flax, exact, torch_f32, *, dtype: str, floor: float, flax_f32=None) -> Judged:
    """`flax` (in `dtype`) against `exact` (torch float64), torch float32's own error the yardstick
    (in float64, with the Flax float32 result's error `flax_f32` beside it)."""
    f32 = rel_err(flax_f32, exact) if flax_f32 is not None and dtype == "float64" else 0.0
    return judged(rel_err(flax, exact), rel_err(torch_f32, exact), dtype=dtype, floor=floor,
                  flax_f32_error=f32 if math.isfinite(f32) else 0.0)


def worst(items: dict[str, Judged]) -> tuple[str, Judged]:
    """The item closest to (or furthest past) its allowance."""
    return max(items.items(), key=lambda kv: kv[1].ratio)


def yardstick_note(dtype: str) -> str:
    f = tolerances.YARDSTICK_FACTOR
    return (f"allowed = max({f:g} × torch float32's own error, floor)" if dtype == "float32" else
            f"allowed = max({f:g} × (torch's + the Flax twin's float32 errors) × 2^-29, floor)")
