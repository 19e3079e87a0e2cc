"""The JAX trainer end to end on a small slice, with the tiny architecture so compiles stay short."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from flax_cnn.data.pipeline import TrainLoader
from flax_cnn.training.errors import TrainingError
from flax_cnn.training.report import METRIC_FIELDS, read_metrics
from flax_cnn.training.config import TrainConfig
from flax_cnn.training.trainer import train_and_evaluate
from tests.train_fixtures import math_only, quiet, small_cfg


def test_run_writes_every_artefact(uninterrupted):
    cfg, out, summary = uninterrupted
    for name in ("config.json", "metrics.jsonl", "curves.png", "confusion.png", "misclassified.png",
                 "model.safetensors", "init.safetensors", "summary.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "best").is_dir() and (out / "checkpoints").is_dir()
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert set(METRIC_FIELDS) <= set(r)
        assert 0 <= r["train_accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1
        assert np.isfinite(r["train_loss"]) and r["images_per_second"] > 0
    assert summary["epochs"] == 2 and summary["test_examples"] == 200 and summary["train_examples"] == 256
    saved = json.loads((out / "config.json").read_text())
    assert TrainConfig.from_dict(saved) == cfg and saved["model_config"]["blocks"][0]["name"] == "c1"


def test_loss_decreases_on_the_slice(uninterrupted):
    rows = read_metrics(uninterrupted[1] / "metrics.jsonl")
    assert rows[1]["train_loss"] < rows[0]["train_loss"]


def test_resume_after_crash_equals_uninterrupted(uninterrupted, monkeypatch, tmp_path):
    cfg, ref_out, _ = uninterrupted
    cfg = cfg.replace(out=str(tmp_path / "run"), tensorboard=False)
    from flax_cnn.training.engine import JaxEngine
    real_step = JaxEngine.train_step
    calls = {"n": 0}

    def crashing_step(self, images, labels):
        calls["n"] += 1
        if calls["n"] == 8 + 4:  # epoch 2 (8 steps per epoch), after the checkpoint at its step 3
            raise RuntimeError("simulated crash")
        if calls["n"] > 8:
            time.sleep(0.2)  # epoch 2 runs >= 0.6 s before its checkpoint: the resumed epoch must count them
        real_step(self, images, labels)

    monkeypatch.setattr(JaxEngine, "train_step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_and_evaluate(cfg, log=quiet)
    monkeypatch.setattr(JaxEngine, "train_step", real_step)
    logs = []
    train_and_evaluate(cfg.replace(resume=True), log=logs.append)
    assert any("resuming" in str(m) and "epoch 2, step 3" in str(m) for m in logs)
    resumed = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert math_only(resumed) == math_only(read_metrics(ref_out / "metrics.jsonl"))
    assert resumed[1]["epoch_seconds"] >= 0.6  # the interrupted part of epoch 2 is carried over
    from safetensors.numpy import load_file
    a, b = load_file(str(ref_out / "model.safetensors")), load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    logs.clear()
    train_and_evaluate(cfg.replace(resume=True), log=logs.append)
    assert any("already finished" in str(m) for m in logs)


def test_new_run_refuses_a_used_directory(uninterrupted):
    cfg, out, _ = uninterrupted
    with pytest.raises(TrainingError, match="--resume"):
        train_and_evaluate(cfg, log=quiet)


def test_nan_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(train_data_dir, tiny_model_json, tmp_path,
                                                                   monkeypatch):
    cfg = small_cfg(train_data_dir, tiny_model_json, tmp_path / "run", epochs=1, log_every=1, checkpoint_every=2)
    orig_epoch = TrainLoader.epoch

    def poisoned_epoch(self, epoch, start_step=0):
        for i, (x, y) in enumerate(orig_epoch(self, epoch, start_step), start=start_step):
            if i == 5:
                x = np.full_like(x, np.nan)
            yield x, y

    monkeypatch.setattr(TrainLoader, "epoch", poisoned_epoch)
    with pytest.raises(TrainingError, match="non-finite loss .* epoch 1 before step 6"):
        train_and_evaluate(cfg, log=quiet)
    assert sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir()) == [2, 4]


def test_four_devices_give_the_same_metrics_as_one(uninterrupted, tmp_path):
    cfg, ref_out, _ = uninterrupted
    train_and_evaluate(cfg.replace(out=str(tmp_path / "r4"), devices=4, tensorboard=False), log=quiet)
    a, b = read_metrics(ref_out / "metrics.jsonl"), read_metrics(tmp_path / "r4" / "metrics.jsonl")
    for ra, rb in zip(a, b):
        for k in ("train_loss", "test_loss"):
            # BN statistics and the loss are all-reduced over 4 shards: a different summation
            # order, float32 rounding amplified by 16 steps of training.
            assert abs(ra[k] - rb[k]) <= 2e-3 * abs(ra[k]), k
        for k in ("train_accuracy", "test_accuracy"):
            assert abs(ra[k] - rb[k]) <= 0.02, k


def test_train_step_compiles_once(train_data_dir, tiny_model_json, tmp_path):
    from flax_cnn.training import run_data
    from flax_cnn.training.engine import JaxEngine
    cfg = small_cfg(train_data_dir, tiny_model_json, tmp_path, epochs=1)
    data = run_data.prepare(cfg)
    eng = JaxEngine(cfg, steps_per_epoch=data.train.steps_per_epoch, out=tmp_path)
    for x, y in data.train.epoch(0):
        eng.train_step(x, y)
    eng.epoch_metrics()
    eng.evaluate(data.test_batches())
    eng.evaluate(data.test_batches())
    assert eng._train_step._cache_size() == 1
    assert eng._eval_step._cache_size() == 1
    eng.close()


@pytest.mark.parametrize("args, message", [
    (["--epochs", "-1"], "--epochs: must be >= 1, got -1"),
    (["--batch-size", "512", "--train-examples", "256"], "--batch-size: 512 is larger than the 256 training examples"),
    (["--data-dir", "/nonexistent/cifar"], "--data-dir: /nonexistent/cifar does not exist"),
    (["--aug.cutout-size", "40"], "--aug.cutout-size: must be an int in [1, 32], got 40"),
    (["--ema-decay", "1.0"], "--ema-decay: must be in [0, 1), got 1.0"),
])
def test_bad_flags_exit_2_with_one_line(args, message):
    r = subprocess.run([sys.executable, "-m", "flax_cnn.train", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr


def _cli_args(cfg: TrainConfig) -> list[str]:
    return ["--data-dir", cfg.data_dir, "--model", cfg.model, "--out", cfg.out, "--epochs", str(cfg.epochs),
            "--batch-size", str(cfg.batch_size), "--train-examples", str(cfg.train_examples),
            "--test-examples", str(cfg.test_examples), "--eval-batch-size", str(cfg.eval_batch_size),
            "--max-lr", str(cfg.max_lr), "--no-progress", "--checkpoint-every", str(cfg.checkpoint_every),
            "--log-every", str(cfg.log_every)]


def test_kill_9_mid_run_then_resume_equals_uninterrupted(uninterrupted, tmp_path):
    import os
    import signal
    import time
    cfg, ref_out, _ = uninterrupted
    cfg = cfg.replace(out=str(tmp_path / "run"), tensorboard=False)
    # --cpu-devices 4 as in this pytest process: XLA:CPU's reduction order depends on the client.
    proc = subprocess.Popen([sys.executable, "-m", "flax_cnn.train", *_cli_args(cfg), "--devices", "1",
                             "--cpu-devices", "4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpts = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ckpts.exists() and any(p.name.isdigit() for p in ckpts.iterdir()):
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    done = read_metrics(tmp_path / "run" / "metrics.jsonl") if (tmp_path / "run" / "metrics.jsonl").exists() else []
    assert len(done) < cfg.epochs
    train_and_evaluate(cfg.replace(resume=True, cpu_devices=4), log=quiet)
    assert math_only(read_metrics(tmp_path / "run" / "metrics.jsonl")) == math_only(read_metrics(ref_out / "metrics.jsonl"))


def test_two_processes_on_loopback_match_one(uninterrupted, tmp_path):
    """Multi-host for real: two JAX processes (gloo collectives over 127.0.0.1), one device each."""
    import socket
    cfg, ref_out, _ = uninterrupted
    cfg = cfg.replace(out=str(tmp_path / "mh"), tensorboard=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, "-m", "flax_cnn.train", *_cli_args(cfg), "--cpu-devices", "1",
                               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    a, b = read_metrics(ref_out / "metrics.jsonl"), read_metrics(tmp_path / "mh" / "metrics.jsonl")
    assert len(b) == len(a)
    for ra, rb in zip(a, b):
        for k in ("train_loss", "test_loss"):
            assert abs(ra[k] - rb[k]) <= 2e-3 * abs(ra[k]), k  # as the 4-device test: all-reduce order
        for k in ("train_accuracy", "test_accuracy"):
            assert abs(ra[k] - rb[k]) <= 0.02, k
