"""Time to a test accuracy from a run's metrics.jsonl: `python -m parity.time_to RUN_DIR [--target 0.85]`.

Two clocks: the sum of the trainer's `epoch_seconds` up to the first epoch at the target (training and
evaluation; epoch 1 includes compiling the train and eval steps), and, when the caller watched the run,
the seconds from launching the trainer to that epoch's row appearing (also process start, imports,
data loading and model init).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def time_to_target(rows: list[dict], target: float, arrivals: dict[int, float] | None = None) -> dict:
    """The first epoch with `test_accuracy >= target` and the seconds to it (None when never reached)."""
    spent, out = 0.0, {"target": target, "epochs_run": len(rows), "reached": False, "epoch": None,
                       "epoch_seconds_to_target": None, "process_seconds_to_target": None,
                       "best_test_accuracy": max((r["test_accuracy"] for r in rows), default=None)}
    for r in rows:
        spent += r["epoch_seconds"]
        if r["test_accuracy"] >= target:
            out.update(reached=True, epoch=r["epoch"], test_accuracy=r["test_accuracy"],
                       epoch_seconds_to_target=round(spent, 2))
            if arrivals and r["epoch"] in arrivals:
                out["process_seconds_to_target"] = round(arrivals[r["epoch"]], 2)
            break
    return out


def read_rows(path: Path) -> list[dict]:
    """metrics.jsonl's rows; a line caught half-written (the trainer replaces the file atomically) is skipped."""
    rows = []
    try:
        text = path.read_text()
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-"):
        print("usage: python -m parity.time_to RUN_DIR [--target 0.85]", file=sys.stderr)
        return 2
    target = float(argv[argv.index("--target") + 1]) if "--target" in argv else 0.85
    result = time_to_target(read_rows(Path(argv[0]) / "metrics.jsonl"), target)
    print(json.dumps(result, indent=2))
    return 0 if result["reached"] else 1


if __name__ == "__main__":
    sys.exit(main())
