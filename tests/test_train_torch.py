"""The torch twin's trainer, cross-loading between twins, predict and the LR range test."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from flax_cnn.training.report import METRIC_FIELDS, read_metrics
from tests.train_fixtures import math_only, quiet, small_cfg
from torch_ref.trainer import train_and_evaluate


def test_run_writes_every_artefact(torch_run):
    cfg, out, summary = torch_run
    for name in ("config.json", "data.json", "metrics.jsonl", "curves.png", "confusion.png", "misclassified.png",
                 "model.safetensors", "best.safetensors", "init.safetensors", "summary.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2] and all(set(METRIC_FIELDS) <= set(r) for r in rows)
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert summary["framework"] == "torch"
    # No pickle anywhere in a torch run directory.
    assert not [p for p in out.rglob("*") if p.suffix in (".pt", ".pth", ".pkl", ".bin")]


def test_resume_after_crash_equals_uninterrupted(torch_run, monkeypatch, tmp_path):
    cfg, ref_out, _ = torch_run
    cfg = cfg.replace(out=str(tmp_path / "run"))
    from torch_ref.engine import TorchEngine
    real_step = TorchEngine.train_step
    calls = {"n": 0}

    def crashing_step(self, images, labels):
        calls["n"] += 1
        if calls["n"] == 8 + 5:  # epoch 2, after the checkpoint at its step 3
            raise RuntimeError("simulated crash")
        real_step(self, images, labels)

    monkeypatch.setattr(TorchEngine, "train_step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_and_evaluate(cfg, log=quiet)
    monkeypatch.setattr(TorchEngine, "train_step", real_step)
    train_and_evaluate(cfg.replace(resume=True), log=quiet)
    assert math_only(read_metrics(tmp_path / "run" / "metrics.jsonl")) == math_only(read_metrics(ref_out / "metrics.jsonl"))


def _evaluate(module: str, run_dir, tmp_path, name: str) -> dict:
    out = tmp_path / f"{name}.json"
    r = subprocess.run([sys.executable, "-m", module, "--checkpoint", str(run_dir), "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


def test_checkpoints_cross_over_between_twins(torch_run, tmp_path):
    """A torch run evaluated in JAX, and in torch, gives its own final test accuracy."""
    cfg, out, summary = torch_run
    by_jax = _evaluate("flax_cnn.evaluate", out, tmp_path, "jax")
    by_torch = _evaluate("torch_ref.evaluate", out, tmp_path, "torch")
    assert by_jax["trained_by"] == "torch" and by_jax["evaluated_by"] == "jax"
    assert by_jax["test_accuracy"] == by_torch["test_accuracy"] == summary["final_test_accuracy"]
    assert abs(by_jax["test_loss"] - by_torch["test_loss"]) < 1e-5


def test_jax_run_evaluated_by_torch(uninterrupted):
    cfg, out, summary = uninterrupted
    from flax_cnn.inference.evaluation import EvalConfig, evaluate_run
    from torch_ref.classifier import load_classifier
    res = evaluate_run(EvalConfig(checkpoint=str(out)), load_classifier, "torch")
    assert res["test_accuracy"] == summary["final_test_accuracy"]


def test_predict_on_generated_images(torch_run, tmp_path):
    from PIL import Image
    _, out, _ = torch_run
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (64, 48), dtype=np.uint8)).save(tmp_path / "b.jpg")
    (tmp_path / "c.png").write_bytes(b"not an image")
    r = subprocess.run([sys.executable, "-m", "flax_cnn.predict", "--checkpoint", str(out),
                        str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), str(tmp_path / "c.png")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].count("%") == 3
    assert "resized 48x64 (WxH) to 32x32" in lines[1] and "converted L to RGB" in lines[1]
    assert r.stderr.strip().splitlines() == [f"python -m flax_cnn.predict: error: {tmp_path / 'c.png'}: "
                                             "not a readable image (UnidentifiedImageError)"]
    probs = [float(p.split()[-2]) for p in lines[0].split(": ", 1)[1].split(", ")]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 100.01


def test_lr_find_returns_a_finite_suggestion_and_restores_the_model(train_data_dir, tiny_model_json, tmp_path):
    import jax
    import torch
    from flax import nnx

    from flax_cnn.training import lr_range
    from flax_cnn.lr_find import find_lr as jax_find
    from flax_cnn.model.cnn import build_model
    from torch_ref.lr_find import find_lr as torch_find
    from torch_ref.model import build_model as torch_build
    from torch_ref.optim import make_optimizer

    cfg = small_cfg(train_data_dir, tiny_model_json, tmp_path, train_examples=512)
    lrs = lr_range.lr_sweep(1e-5, 1.0, 30)
    module = build_model(cfg.model_config())
    before = jax.tree.map(np.asarray, nnx.state(module))
    res = jax_find(module, lr_range.batches(cfg, 30), lrs, progress=False)
    assert res.suggested_lr is not None and np.isfinite(res.suggested_lr) and 1e-5 <= res.suggested_lr <= 1.0
    after = jax.tree.map(np.asarray, nnx.state(module))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))

    tm = torch_build(cfg.model_config())
    opt = make_optimizer(tm.parameters(), cfg)
    sd = {k: v.clone() for k, v in tm.state_dict().items()}
    tres = torch_find(tm, opt, lr_range.batches(cfg, 30), lrs, progress=False)
    assert tres.suggested_lr is not None and np.isfinite(tres.suggested_lr)
    assert all(torch.equal(v, tm.state_dict()[k]) for k, v in sd.items()) and not opt.state

    lr_range.plot(res, tmp_path / "lr.png", "test")
    assert (tmp_path / "lr.png").stat().st_size > 0


def test_a_one_cycle_peak_at_step_zero_is_one_line(train_data_dir, tmp_path, capsys):
    """torch's OneCycleLR divides by zero when pct_start x steps == 1: the trainer refuses it first, in
    the line the JAX trainer prints (its schedule table is the same function)."""
    from torch_ref.train import main

    rc = main(["--data-dir", str(train_data_dir), "--epochs", "1", "--train-examples", "256", "--batch-size", "64",
               "--out", str(tmp_path / "run"), "--no-progress"])
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "python -m torch_ref.train: error: --pct-start: 0.25 × 4 steps puts the one-cycle peak at step 0; change it "
        "or the number of steps (epochs, examples, batch size)"]
