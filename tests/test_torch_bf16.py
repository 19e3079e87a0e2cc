"""The torch twin's `--precision bf16`: autocast convs and matmuls, float32 parameters and BatchNorm state."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flax_cnn.model.config import ConfigError
from torch_ref.engine import TorchEngine
from torch_ref.precision import autocast
from tests.train_fixtures import math_only, quiet, small_cfg

BF16_U = 2.0**-8  # bfloat16's unit roundoff (8 significand bits)


def _engine(tiny_model_json, tmp_path, precision: str) -> TorchEngine:
    cfg = small_cfg(None, tiny_model_json, tmp_path / precision, precision=precision)
    return TorchEngine(cfg, steps_per_epoch=10, out=tmp_path / precision, device="cpu")


def _batch(n: int = 8):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 32, 32, 3)).astype(np.float32), (np.arange(n) % 10).astype(np.int32)


def test_bf16_step_keeps_parameters_gradients_and_batchnorm_state_float32(tiny_model_json, tmp_path):
    engine = _engine(tiny_model_json, tmp_path, "bf16")
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = output.dtype
        return hook

    for name, m in engine.model.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear)):
            m.register_forward_hook(record(name))
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    engine.train_step(*_batch())
    assert len(seen) > 8 and set(seen.values()) == {torch.bfloat16}  # convs, BN (bf16 in, bf16 out) and fc
    assert {p.dtype for p in engine.model.parameters()} == {torch.float32}
    assert {p.grad.dtype for p in engine.model.parameters()} == {torch.float32}
    after = engine.model.state_dict()
    assert all(after[k].dtype == v.dtype for k, v in before.items())
    bn = [k for k in after if k.endswith("running_var")]
    assert bn and all(not torch.equal(after[k], before[k]) for k in bn)  # statistics were updated
    assert engine.epoch_metrics()["count"] == 8 and engine.epoch_metrics()["nonfinite"] == 0


def test_bf16_loss_and_gradients_are_float32_ones_to_bf16_rounding(tiny_model_json, tmp_path):
    """Same weights and batch: bf16 autocast is the float32 step up to bf16's rounding, not another model."""
    out = {}
    for precision in ("fp32", "bf16"):
        engine = _engine(tiny_model_json, tmp_path, precision)
        x, y = _batch()
        xt, yt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y.astype(np.int64))
        with autocast(precision, "cpu"):
            loss = torch.nn.functional.cross_entropy(engine.model(xt).float(), yt)
        loss.backward()
        out[precision] = float(loss.detach()), [p.grad.clone() for p in engine.model.parameters()]
    (l32, g32), (l16, g16) = out["fp32"], out["bf16"]
    assert l16 != l32 and abs(l16 - l32) / l32 < 8 * BF16_U
    worst = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(g16, g32))
    assert 0 < worst < 128 * BF16_U  # measured 43u: BatchNorm's backward cancels (see tolerances.BF16_GRADIENT_EXCESS)


def test_bf16_run_trains_and_evaluates(train_data_dir, tiny_model_json, tmp_path):
    from torch_ref.trainer import train_and_evaluate

    cfg = small_cfg(train_data_dir, tiny_model_json, tmp_path / "run", precision="bf16", epochs=1)
    summary = train_and_evaluate(cfg, log=quiet)
    (row,) = math_only([json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()])
    assert np.isfinite(row["train_loss"]) and 0 <= summary["final_test_accuracy"] <= 1


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="bf16"):
        autocast("fp16", "cpu")
