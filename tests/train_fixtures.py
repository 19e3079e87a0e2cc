"""Session fixtures of the trainer tests: one uninterrupted small run per twin, reused by many tests."""

from __future__ import annotations

import pytest

from flax_cnn.training.config import TrainConfig

TIMING = {"epoch_seconds", "images_per_second"}


def small_cfg(data_dir, model_json, out, **kw) -> TrainConfig:
    base = dict(data_dir=data_dir, model=model_json, out=str(out), epochs=2, batch_size=32, train_examples=256,
                test_examples=200, eval_batch_size=100, max_lr=0.01, progress=False, devices=1,
                checkpoint_every=3, log_every=2)
    base.update(kw)
    return TrainConfig(**base)


def quiet(*a, **k):
    """A `log` that prints nothing."""
    pass


def math_only(history):
    """Metrics rows without the timing fields (what must be reproducible)."""
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


@pytest.fixture(scope="session")
def uninterrupted(train_data_dir, tiny_model_json, tmp_path_factory):
    from flax_cnn.training.trainer import train_and_evaluate

    out = tmp_path_factory.mktemp("jax") / "run"
    cfg = small_cfg(train_data_dir, tiny_model_json, out, tensorboard=True)
    summary = train_and_evaluate(cfg, log=quiet)
    return cfg, out, summary


@pytest.fixture(scope="session")
def torch_run(train_data_dir, tiny_model_json, tmp_path_factory):
    from torch_ref.trainer import train_and_evaluate

    out = tmp_path_factory.mktemp("torch") / "run"
    cfg = small_cfg(train_data_dir, tiny_model_json, out)
    return cfg, out, train_and_evaluate(cfg, log=quiet)
