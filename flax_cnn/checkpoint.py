"""Orbax checkpoints of the JAX trainer: the last N (mid-epoch ones included) and the best.

Each checkpoint holds the whole `TrainState` (params, BatchNorm statistics, optimizer state,
step, the epoch's metric sums) plus a JSON `meta` (epoch, position in the epoch, history), so
`--resume` continues exactly where the run stopped.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    """`<out>/checkpoints` keeps the last `keep`; `<out>/best` keeps the best test accuracy."""

    def __init__(self, out: Path, *, keep: int):
        opts = dict(create=True, enable_async_checkpointing=False)
        self.latest = ocp.CheckpointManager(
            (out / "checkpoints").absolute(), options=ocp.CheckpointManagerOptions(max_to_keep=keep, **opts))
        self.best = ocp.CheckpointManager(
            (out / "best").absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=1, best_fn=lambda m: m["test_accuracy"],
                                                 best_mode="max", **opts))

    @staticmethod
    def _args(state, meta: dict) -> ocp.args.Composite:
        return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))

    def save(self, step: int, state, meta: dict) -> None:
        self.latest.save(step, args=self._args(state, meta), force=True)
        self.latest.wait_until_finished()

    def save_best(self, step: int, state, meta: dict, test_accuracy: float) -> None:
        self.best.save(step, args=self._args(state, meta), metrics={"test_accuracy": test_accuracy}, force=True)
        self.best.wait_until_finished()

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    @staticmethod
    def _restore(mngr: ocp.CheckpointManager, step: int, like) -> tuple[object, dict]:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        got = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                         meta=ocp.args.JsonRestore()))
        return got["state"], got["meta"]

    def restore_latest(self, like) -> tuple[object, dict]:
        """(state shaped and sharded like `like`, meta) of the newest checkpoint."""
        return self._restore(self.latest, self.latest.latest_step(), like)

    def restore_best(self, like) -> tuple[object, dict]:
        return self._restore(self.best, self.best.best_step(), like)

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def restore_for_eval(run_dir: Path, like, *, which: str = "best") -> tuple[object, dict]:
    """Read one checkpoint of a finished or running run without writing anything."""
    root = run_dir / ("best" if which == "best" else "checkpoints")
    mngr = ocp.CheckpointManager(root.absolute(), options=ocp.CheckpointManagerOptions(read_only=True))
    step = mngr.best_step() if which == "best" else mngr.latest_step()
    if step is None:
        raise FileNotFoundError(f"{root}: no checkpoint")
    try:
        return Checkpoints._restore(mngr, step, like)
    finally:
        mngr.close()
