"""`train_and_evaluate(config, workdir)`: the JAX trainer as a library call."""

from __future__ import annotations

from pathlib import Path

from flax_cnn.training import external, loop, run_data
from flax_cnn.training.engine import JaxEngine
from flax_cnn.training.config import TrainConfig


def train_and_evaluate(cfg: TrainConfig, workdir: str | Path | None = None, *, log=print) -> dict:
    """Train and evaluate per `cfg` into `workdir` (default `cfg.out`); returns the summary."""
    out = Path(workdir or cfg.out)
    cfg = external.prepare_jax(cfg, out, log=log)  # --torch-model: ported to OUT/ported/model.py first
    if cfg.resume:
        external.check_unchanged(cfg, out)
    data = run_data.prepare(cfg)
    augment = None
    if cfg.augment == "device":
        from flax_cnn.augment.on_device import make_device_augment

        augment = make_device_augment(cfg.aug, data.stats, epochs=cfg.epochs,
                                      steps_per_epoch=data.train.steps_per_epoch)
    engine = JaxEngine(cfg, steps_per_epoch=data.train.steps_per_epoch, out=out, augment=augment)
    try:
        return loop.run(cfg, engine, data, engine.lr_table, out=out, log=log)
    finally:
        engine.close()
        data.train.close()
