"""`--resume` from the newest intact checkpoint, for both twins.

Newest first, each checkpoint is verified against its checksum file and then restored (one
without the file, from before checksums, is restored unverified and said so); one that fails
either is reported in a line naming its step and the error, and the next older one is tried.
The damaged ones newer than the one resumed from are moved aside to `<root>.damaged/` (not
deleted), so the run can write those steps again. If none is intact nothing is moved and
`FileError` (exit 2) says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from flax_cnn.checkpoints import checksums
from flax_cnn.runtime.faults import FileError, one_line

T = TypeVar("T")


def restore_newest_intact(root: Path, steps: list[int], restore: Callable[[int], T], *, log=print,
                          move_aside: bool = True) -> tuple[int, T]:
    """(step, restore(step)) of the newest step under `root` that verifies and restores."""
    damaged: list[tuple[int, str]] = []
    for step in sorted(steps, reverse=True):
        try:
            verified = checksums.verify(root / str(step))
            got = restore(step)
        except checksums.Damaged as e:
            reason = str(e)
        except Exception as e:  # any failure to read it back: orbax, tensorstore, safetensors, JSON
            reason = one_line(e)
        else:
            if not verified:  # the restore itself read every tensor back; nothing to compare them with
                log(f"checkpoint {step} has no {checksums.NAME} (written before checksums were, or its save "
                    "was cut short just after the data): restored without verification")
            if damaged and move_aside:
                moved = [move_to_damaged(root, s) for s, _ in damaged]
                log(f"resuming from checkpoint {step} instead; the damaged one{'s' if len(moved) > 1 else ''} "
                    f"moved to {moved[0].parent}")
            return step, got
        damaged.append((step, reason))
        log(f"checkpoint {step} in {root} is damaged ({reason}): skipped")
    raise FileError(f"--resume: no intact checkpoint in {root} ("
                    + "; ".join(f"step {s}: {r}" for s, r in damaged)
                    + "); nothing was deleted. Restore the directory from a copy, or start a new --out")


def move_to_damaged(root: Path, step: int) -> Path:
    """Move `root/step` to `root.damaged/step` (suffixed if that exists); returns the new path."""
    dest_dir = root.with_name(root.name + ".damaged")
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest, n = dest_dir / str(step), 1
    while dest.exists():
        dest, n = dest_dir / f"{step}-{n}", n + 1
    (root / str(step)).rename(dest)
    return dest
