"""`python -m parity.compare RUN_A RUN_B`: two training runs side by side — typically the JAX and
the torch twin trained from the same initial weights with the same data order.

Prints per-epoch test accuracy of both and the gap, checks that the runs are comparable (same
computing flags, same initial weights), and plots both runs' curves on shared axes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import tyro

GOAL_PP = 0.5  # issue #6: the two twins' final test accuracies within 0.5 percentage points


@dataclass(frozen=True)
class CompareArgs:
    """Compare two run directories (of either trainer) epoch by epoch."""

    runs: tyro.conf.Positional[tuple[str, str]]
    """The two run directories."""
    plot: str | None = None
    """Write both runs' loss and accuracy curves, on shared axes, to this PNG."""
    json: str | None = None
    """Write the comparison as JSON."""


@dataclass(frozen=True)
class Run:
    label: str
    path: Path
    config: dict
    history: list[dict]
    init: dict[str, np.ndarray] | None


def load(path: str) -> Run:
    from flax_cnn.training.report import read_metrics
    from flax_cnn.inference.run_dir import RunDir
    from flax_cnn.model.weights import load_safetensors

    run = RunDir.open(path)
    metrics = run.path / "metrics.jsonl"
    history = read_metrics(metrics) if metrics.is_file() else []
    if not history:
        raise ValueError(f"{run.path}: no finished epoch in metrics.jsonl yet")
    init = run.path / "init.safetensors"
    fw = run.framework()
    return Run(fw if fw != "?" else run.path.name, run.path, run.config.to_dict(), history,
               load_safetensors(init) if init.is_file() else None)


def config_differences(a: Run, b: Run) -> dict[str, tuple]:
    """Flags that change what a run computes and differ between the two (device layout excluded)."""
    from flax_cnn.training.loop import RESUMABLE_CHANGES

    return {k: (a.config.get(k), b.config.get(k)) for k in sorted(set(a.config) | set(b.config))
            if k not in RESUMABLE_CHANGES and a.config.get(k) != b.config.get(k)}


def init_difference(a: Run, b: Run) -> float | None:
    """Max |Δ| over the initial weights (torch naming); inf if the key sets differ; None if unknown."""
    if a.init is None or b.init is None:
        return None
    if set(a.init) != set(b.init):
        return float("inf")
    return max(float(np.max(np.abs(a.init[k].astype(np.float64) - b.init[k]), initial=0.0)) for k in a.init)


def compare(a: Run, b: Run) -> dict:
    """Per-epoch rows over the epochs both have, final and best accuracies, and the gap."""
    n = min(len(a.history), len(b.history))
    rows = [{"epoch": ra["epoch"], a.label: ra["test_accuracy"], b.label: rb["test_accuracy"],
             "gap_pp": 100 * (ra["test_accuracy"] - rb["test_accuracy"])} for ra, rb in zip(a.history, b.history)]
    best = {r.label: max(x["test_accuracy"] for x in r.history[:n]) for r in (a, b)} if n else {}
    out = {"runs": {r.label: {"path": str(r.path), "epochs": len(r.history), "of": r.config.get("epochs")}
                    for r in (a, b)},
           "config_differences": {k: list(v) for k, v in config_differences(a, b).items()},
           "init_max_abs_difference": init_difference(a, b), "epochs_compared": n, "rows": rows}
    if n:
        out.update({"final_gap_pp": rows[n - 1]["gap_pp"], "best": best,
                    "best_gap_pp": 100 * (best[a.label] - best[b.label]),
                    "both_finished": len(a.history) == a.config.get("epochs") and
                    len(b.history) == b.config.get("epochs")})
    return out


def plot(a: Run, b: Run, path: str) -> None:
    from flax_cnn.training.report import _pyplot

    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for r, color in ((a, "tab:blue"), (b, "tab:orange")):
        ep = [x["epoch"] for x in r.history]
        ax1.plot(ep, [x["train_loss"] for x in r.history], "--", color=color, label=f"{r.label} train")
        ax1.plot(ep, [x["test_loss"] for x in r.history], "-", color=color, label=f"{r.label} test")
        ax2.plot(ep, [100 * x["test_accuracy"] for x in r.history], "-o", ms=3, color=color, label=f"{r.label} test")
        ax2.plot(ep, [100 * x["train_accuracy"] for x in r.history], "--", color=color, label=f"{r.label} train")
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax2.axhline(85, color="gray", lw=0.8, ls=":")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy (dotted: 85 %)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_report(c: dict, a: Run, b: Run) -> str:
    lines = [f"{r.label}: {r.path} ({len(r.history)} of {r.config.get('epochs')} epochs)" for r in (a, b)]
    diffs = c["config_differences"]
    lines.append("computing flags: " + ("identical" if not diffs else
                                        "; ".join(f"{k}: {v[0]!r} vs {v[1]!r}" for k, v in diffs.items())))
    d = c["init_max_abs_difference"]
    lines.append("initial weights: " + ("unknown (no init.safetensors)" if d is None else
                                        "different tensors" if d == float("inf") else
                                        "identical" if d == 0 else f"max |Δ| {d:.3g}"))
    lines.append("")
    lines.append(f"{'epoch':>5}  {a.label:>9}  {b.label:>9}  {'gap, pp':>8}")
    for r in c["rows"]:
        lines.append(f"{r['epoch']:>5}  {100 * r[a.label]:>8.2f}%  {100 * r[b.label]:>8.2f}%  {r['gap_pp']:>+8.2f}")
    if c["epochs_compared"]:
        state = "final" if c["both_finished"] else f"after {c['epochs_compared']} epochs (not both finished)"
        lines.append("")
        lines.append(f"{state}: gap {c['final_gap_pp']:+.2f} pp; best {100 * c['best'][a.label]:.2f} % vs "
                     f"{100 * c['best'][b.label]:.2f} % ({c['best_gap_pp']:+.2f} pp); goal |gap| ≤ {GOAL_PP} pp")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(CompareArgs, args=argv, prog="python -m parity.compare")
    from flax_cnn.model.config import ConfigError

    try:
        a, b = load(args.runs[0]), load(args.runs[1])
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"python -m parity.compare: error: {e}", file=sys.stderr)
        return 2
    if a.label == b.label:  # two runs of one framework: tell them apart by directory
        a, b = (replace(r, label=f"{r.label}:{r.path.name}") for r in (a, b))
    c = compare(a, b)
    print(format_report(c, a, b))
    if args.plot:
        plot(a, b, args.plot)
    if args.json:
        Path(args.json).write_text(json.dumps(c, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
