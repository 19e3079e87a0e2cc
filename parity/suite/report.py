"""The report for people (a table on stdout), for programs (JSON) and for eyes (a loss-curve PNG)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from parity.suite.results import Check, Report

_COLUMNS = ("family", "check", "error", "torch_own", "allowed", "result", "where")


def _num(x: float) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "-"
    return "inf" if math.isinf(x) else "0" if x == 0 else f"{x:.2e}"


def _row(c: Check, width: int) -> tuple[str, ...]:
    name = c.name if len(c.name) <= width else c.name[:width - 1] + "…"
    own = c.details.get("torch_error")
    return (c.family, name, _num(c.error), "" if own is None else _num(own), _num(c.tol), c.status, c.where)


def format_table(report: Report, *, max_check_width: int = 78) -> str:
    """family | check | error | torch_own | allowed | result | where, then a one-line verdict.

    `error` is the Flax twin's distance to the exact reference (torch float64 for the families
    with a yardstick), `torch_own` torch float32's own distance to it, `allowed` the tolerance
    the check applied (for those families: the larger of 10× torch's own and a floor)."""
    rows = [_COLUMNS] + [_row(c, max_check_width) for c in report.checks]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS) - 1)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(v.ljust(w) for v, w in zip(r[:-1], widths)) + ("  " + r[-1] if r[-1] else ""))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  -----")
    lines.append("")
    agreement = float64_agreement(report)
    if agreement is not None:
        lines.append(f"float64: the twins agree to {agreement:.1e} (largest difference over every compared value)")
    lines.append(verdict(report))
    return "\n".join(lines)


def float64_agreement(report: Report) -> float | None:
    """The largest Flax-vs-torch difference over every value the float64 checks compared (None: none ran)."""
    worst = None
    for c in report.checks:
        if "[float64]" not in c.name or c.skipped:
            continue
        rows = c.details.get("tensors") or c.details.get("layers") or c.details.get("buffers") or []
        errors = [r["error"] for r in rows if "error" in r] + [c.error]
        worst = max(errors) if worst is None else max(worst, *errors)
    return worst


def verdict(report: Report) -> str:
    n = len(report.checks)
    skipped = sum(c.skipped for c in report.checks)
    fails = report.failures()
    if not fails:
        return f"PASS: {n - skipped} of {n} checks pass" + (f", {skipped} skipped" if skipped else "")
    first = fails[0]
    return (f"FAIL: {len(fails)} of {n} checks fail, in {', '.join(report.failed_families())}; first: "
            f"{first.family} / {first.name}" + (f" — {first.where}" if first.where else ""))


def write_json(report: Report, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report.to_dict(), indent=1) + "\n")


def plot_curves(report: Report, path: str | Path) -> bool:
    """Loss of both twins per step, and the weights' relative divergence; False if no trajectory ran."""
    c = report.curves
    if not c.get("loss_torch"):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(c["step"], c["loss_torch"], label="torch", lw=2)
    ax1.plot(c["step"], c["loss_jax"], "--", label="jax", lw=1.5)
    ax1.set(xlabel="step", ylabel="training loss", title="loss per step, same batches")
    ax1.legend()
    ax2.semilogy(c["step"], [max(e, 1e-18) for e in c["param_rel_err"]])  # log scale: an exact 0 at 1e-18
    ax2.set(xlabel="step", ylabel="max relative weight difference", title="weights: jax vs torch")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
