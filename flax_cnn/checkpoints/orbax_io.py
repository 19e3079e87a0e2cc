"""Orbax checkpoints of the JAX trainer: the last N (mid-epoch ones included) and the best.

Each checkpoint holds the whole `TrainState` (params, BatchNorm statistics, optimizer state,
step, the epoch's metric sums) plus a JSON `meta` (epoch, position in the epoch, history), so
`--resume` continues exactly where the run stopped.

Orbax writes a step into a temporary directory and renames it when done; after that this module
adds `checksums.json` (`flax_cnn.checkpoints.checksums`) and only then deletes the steps beyond the last N,
so a kill or a full disk at any point leaves the previous checkpoint intact. `--resume` verifies
the checksums and restores the newest step that passes (`flax_cnn.checkpoints.resume`).
"""

from __future__ import annotations

import logging
import shutil
from contextlib import contextmanager
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from flax_cnn.checkpoints import checksums, resume
from flax_cnn.runtime.faults import (DiskFull, FileError, disk_full_message, is_disk_full, one_line,
                             quiet_closed_loop_callbacks, quiet_disk_full_logs)


@contextmanager
def _orbax_quiet():
    """Orbax logs (absl, ERROR) each damaged file it meets while listing or restoring steps; the
    resume reports each damaged checkpoint in one line of its own instead."""
    log = logging.getLogger("absl")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


class Checkpoints:
    """`<out>/checkpoints` keeps the last `keep`; `<out>/best` keeps the best test accuracy."""

    def __init__(self, out: Path, *, keep: int):
        # cleanup_tmp_directories: a save cut short (kill, full disk) leaves orbax's temporary
        # directory; the next run removes it.
        opts = dict(create=True, enable_async_checkpointing=False, cleanup_tmp_directories=True)
        quiet_disk_full_logs("absl", "asyncio")  # a failed save: DiskFull's one line, not a log per write
        quiet_closed_loop_callbacks()
        self.keep = keep
        with _orbax_quiet():  # it reads every step's metadata
            self.latest = ocp.CheckpointManager(  # no max_to_keep: old steps go only after checksums.json
                (out / "checkpoints").absolute(), options=ocp.CheckpointManagerOptions(**opts))
            self.best = ocp.CheckpointManager(
                (out / "best").absolute(),
                options=ocp.CheckpointManagerOptions(max_to_keep=1, best_fn=lambda m: m["test_accuracy"],
                                                     best_mode="max", **opts))

    @staticmethod
    def _args(state, meta: dict) -> ocp.args.Composite:
        return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))

    @staticmethod
    def _save(mngr: ocp.CheckpointManager, step: int, args, **kw) -> None:
        """Save `step`, then its checksums; a full disk raises DiskFull (nothing of `step` is used later)."""
        root = Path(mngr.directory)
        if step in mngr.all_steps():  # written again by a run resumed from an older checkpoint
            mngr.delete(step)
        try:
            mngr.save(step, args=args, force=True, **kw)
            mngr.wait_until_finished()
            if jax.process_index() == 0 and (root / str(step)).is_dir():  # best: not kept if not the best
                checksums.write(root / str(step))
            _sync(f"flax_cnn checksums {root.name} {step}")
        except Exception as e:
            if not is_disk_full(e):
                raise
            if jax.process_index() == 0 and not (root / str(step) / checksums.NAME).is_file():
                # finished by orbax but without checksums; orbax's temporary directory may still be
                # written by tensorstore's threads, so it is left to cleanup_tmp_directories
                shutil.rmtree(root / str(step), ignore_errors=True)
            raise DiskFull(disk_full_message(step, root, [s for s in mngr.all_steps() if s != step])) from None

    def save(self, step: int, state, meta: dict) -> None:
        self._save(self.latest, step, self._args(state, meta))
        for old in self.latest.all_steps()[:-self.keep]:
            self.latest.delete(old)

    def save_best(self, step: int, state, meta: dict, test_accuracy: float) -> None:
        self._save(self.best, step, self._args(state, meta), metrics={"test_accuracy": test_accuracy})

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    @staticmethod
    def _restore(mngr: ocp.CheckpointManager, step: int, like) -> tuple[object, dict]:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        got = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                         meta=ocp.args.JsonRestore()))
        return got["state"], got["meta"]

    def restore_latest(self, like, *, log=print) -> tuple[object, dict]:
        """(state shaped and sharded like `like`, meta) of the newest intact checkpoint.

        Damaged newer ones are reported through `log` and moved aside; FileError if none is intact.
        """
        root = Path(self.latest.directory)
        with _orbax_quiet():
            _, (state, meta) = resume.restore_newest_intact(
                root, self.latest.all_steps(), lambda s: self._restore(self.latest, s, like), log=log,
                move_aside=jax.process_index() == 0)
            _sync("flax_cnn resumed")
            self.latest.reload()  # the steps moved aside are gone from its listing
        return state, meta

    def restore_best(self, like) -> tuple[object, dict]:
        return self._restore(self.best, self.best.best_step(), like)

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def restore_for_eval(run_dir: Path, like, *, which: str = "best") -> tuple[object, dict]:
    """Read one checkpoint of a finished or running run without writing anything (verified first)."""
    root = run_dir / ("best" if which == "best" else "checkpoints")
    mngr = ocp.CheckpointManager(root.absolute(), options=ocp.CheckpointManagerOptions(read_only=True))
    step = mngr.best_step() if which == "best" else mngr.latest_step()
    if step is None:
        raise FileError(f"{root}: no checkpoint")
    try:
        checksums.verify(root / str(step))
        return Checkpoints._restore(mngr, step, like)
    except checksums.Damaged as e:
        raise FileError(f"checkpoint {root / str(step)} is damaged ({e})") from None
    except (ValueError, OSError, KeyError) as e:
        raise FileError(f"checkpoint {root / str(step)} is damaged ({one_line(e)})") from None
    finally:
        mngr.close()
