"""`train_and_evaluate(config, workdir)`: the PyTorch twin's trainer as a library call."""

from __future__ import annotations

from pathlib import Path

from flax_cnn.training import external, loop, run_data, schedules
from flax_cnn.training.config import TrainConfig
from torch_ref.engine import TorchEngine


def train_and_evaluate(cfg: TrainConfig, workdir: str | Path | None = None, *, log=print) -> dict:
    """Train and evaluate per `cfg` into `workdir` (default `cfg.out`); returns the summary."""
    out = Path(workdir or cfg.out)
    if cfg.resume:
        external.check_unchanged(cfg, out)
    data = run_data.prepare(cfg)
    # for display (torch's scheduler drives); first, so a schedule torch cannot build is a one-line ConfigError
    lr_table, _ = schedules.tables(cfg, data.train.steps_per_epoch)
    engine = TorchEngine(cfg, steps_per_epoch=data.train.steps_per_epoch, out=out)
    try:
        return loop.run(cfg, engine, data, lr_table, out=out, log=log)
    finally:
        engine.close()
        data.train.close()
