"""--ema-decay: both twins average weights and BatchNorm statistics the same way, evaluate and export
the average, and resume it exactly."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import load_file

from flax_cnn.training.report import read_metrics
from flax_cnn.training.step import ema_decay_at
from tests.train_fixtures import math_only, quiet, small_cfg

DECAY = 0.9


def _expected_ema(trajectory: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The EMA recursion by hand over the states after each step (trajectory[0] = the initial one)."""
    ema = {k: v.astype(np.float64) for k, v in trajectory[0].items()}
    for t, state in enumerate(trajectory[1:]):
        d = min(DECAY, (1 + t) / (10 + t))
        ema = {k: d * ema[k] + (1 - d) * state[k] for k in ema}
    return ema


def test_decay_warms_up_then_holds():
    np.testing.assert_allclose([float(ema_decay_at(0.999, t)) for t in (0, 1, 8, 10_000)],
                               [0.1, 2 / 11, 0.5, 0.999], rtol=1e-6)


def _run_engine(engine_cls, cfg, tmp_path, n_steps=4):
    """Steps on fixed random batches; returns the engine and its model state after each step."""
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((8, 32, 32, 3)).astype(np.float32), rng.integers(0, 10, 8))
               for _ in range(n_steps)]
    eng = engine_cls(cfg, steps_per_epoch=n_steps, out=tmp_path)
    path = tmp_path / "w.safetensors"
    eng_raw = engine_cls(cfg.replace(ema_decay=0.0), steps_per_epoch=n_steps, out=tmp_path / "raw")
    trajectory = []
    for i in range(n_steps + 1):
        eng_raw.export_weights(path)
        trajectory.append(load_file(str(path)))
        if i < n_steps:
            eng.train_step(*batches[i])
            eng_raw.train_step(*batches[i])
    eng.export_weights(path)
    return load_file(str(path)), trajectory


@pytest.mark.parametrize("twin", ["jax", "torch"])
def test_exported_weights_are_the_moving_average_of_the_steps(twin, tiny_model_json, tmp_path):
    if twin == "jax":
        from flax_cnn.training.engine import JaxEngine as Engine
    else:
        from torch_ref.engine import TorchEngine as Engine
    cfg = small_cfg(None, tiny_model_json, tmp_path, ema_decay=DECAY, devices=1,
                    dropout=0.0)  # two torch engines would draw different masks from the one global RNG
    got, trajectory = _run_engine(Engine, cfg, tmp_path)
    want = _expected_ema(trajectory)
    assert set(got) == set(want)
    floats = [k for k in want if "num_batches_tracked" not in k]
    moved = max(float(np.abs(trajectory[-1][k] - trajectory[0][k]).max()) for k in floats)
    assert moved > 1e-3  # the steps changed the weights, so the check below is not vacuous
    for k in floats:
        np.testing.assert_allclose(got[k], want[k], rtol=2e-5, atol=2e-6, err_msg=k)
    # ... and not the last weights (the average lags them by more than the tolerance above)
    assert max(float(np.abs(got[k] - trajectory[-1][k]).max()) for k in floats) > 1e-3


@pytest.mark.parametrize("twin", ["jax", "torch"])
def test_resume_with_ema_equals_uninterrupted(twin, train_data_dir, tiny_model_json, tmp_path, monkeypatch):
    if twin == "jax":
        from flax_cnn.training.engine import JaxEngine as Engine
        from flax_cnn.training.trainer import train_and_evaluate
    else:
        from torch_ref.engine import TorchEngine as Engine
        from torch_ref.trainer import train_and_evaluate
    ref = small_cfg(train_data_dir, tiny_model_json, tmp_path / "ref", ema_decay=DECAY)
    train_and_evaluate(ref, log=quiet)
    cfg = ref.replace(out=str(tmp_path / "run"))
    real_step = Engine.train_step
    calls = {"n": 0}

    def crashing_step(self, images, labels):
        calls["n"] += 1
        if calls["n"] == 8 + 5:  # epoch 2 (8 steps per epoch), after the checkpoint at its step 3
            raise RuntimeError("simulated crash")
        real_step(self, images, labels)

    monkeypatch.setattr(Engine, "train_step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_and_evaluate(cfg, log=quiet)
    monkeypatch.setattr(Engine, "train_step", real_step)
    train_and_evaluate(cfg.replace(resume=True), log=quiet)
    assert math_only(read_metrics(tmp_path / "run" / "metrics.jsonl")) == math_only(
        read_metrics(tmp_path / "ref" / "metrics.jsonl"))
    a, b = load_file(str(tmp_path / "ref" / "model.safetensors")), load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all(np.array_equal(a[k], b[k]) for k in a)
