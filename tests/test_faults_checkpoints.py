"""Damaged checkpoints and a SIGKILL inside a save: `--resume` goes on from the newest intact
checkpoint and ends with the metrics of an uninterrupted run; with none intact, one line, exit 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.faults_util import PROG, cli_args, copy_run, same_metrics, snapshot, steps, train_cli, truncate

FIXTURE = {"jax": "uninterrupted", "torch": "torch_run"}


def _data_files(step_dir):
    """The tensor files of one checkpoint: orbax's OCDBT data files, or the torch twin's safetensors."""
    return [p for p in step_dir.rglob("*") if p.is_file() and (p.parent.name == "d" or p.suffix == ".safetensors")]


def _same_weights(a, b) -> bool:
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("twin, checksummed", [("jax", True), ("torch", True), ("jax", False)])
def test_resume_skips_a_truncated_newest_checkpoint(twin, checksummed, request, tmp_path, capsys):
    """Its data files cut to 20 bytes (a full disk, a bad copy). Without checksums.json (a checkpoint
    from before them) orbax's restore itself fails, and its error is the reason given."""
    cfg, ref, _ = request.getfixturevalue(FIXTURE[twin])
    run = copy_run(ref, tmp_path / "run")
    ck = run / "checkpoints"
    assert steps(ck) == [14, 16]  # 8 steps per epoch, every 3 steps, the last 2 kept
    for f in _data_files(ck / "16"):
        truncate(f, 20)
    if not checksummed:
        (ck / "16" / "checksums.json").unlink()
    rc, out, err = train_cli(twin, cli_args(cfg.replace(out=str(run)), resume=True), capsys)
    assert rc == 0 and err == [], err
    skipped = [ln for ln in out.splitlines() if ln.startswith(f"checkpoint 16 in {ck} is damaged (")]
    assert len(skipped) == 1 and skipped[0].endswith("): skipped"), out
    if checksummed:
        assert " is 20 bytes, " in skipped[0] and " were written" in skipped[0], skipped[0]
    else:
        assert "(ValueError: OUT_OF_RANGE: Error " in skipped[0], skipped[0]  # tensorstore's, via orbax
    assert f"resuming from checkpoint 14 instead; the damaged one moved to {run / 'checkpoints.damaged'}" in out
    assert f"resuming {run} at epoch 2, step 6/8" in out
    assert same_metrics(run, ref) and _same_weights(run, ref)
    assert steps(ck) == [14, 16] and steps(run / "checkpoints.damaged") == [16]  # kept for a look, not deleted


@pytest.mark.parametrize("twin", ["jax", "torch"])
def test_resume_with_no_intact_checkpoint_exits_2_and_deletes_nothing(twin, request, tmp_path, capsys):
    cfg, ref, _ = request.getfixturevalue(FIXTURE[twin])
    run = copy_run(ref, tmp_path / "run")
    ck = run / "checkpoints"
    for step in (14, 16):
        for f in _data_files(ck / str(step)):
            truncate(f, 20)
    before = snapshot(run)
    rc, out, err = train_cli(twin, cli_args(cfg.replace(out=str(run)), resume=True), capsys)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"{PROG[twin]}: error: --resume: no intact checkpoint in {ck} (step 16: ")
    assert "; step 14: " in err[0] and err[0].endswith("); nothing was deleted. Restore the directory from a "
                                                      "copy, or start a new --out")
    assert snapshot(run) == before


@pytest.mark.parametrize("twin, point", [("jax", "orbax"), ("torch", "torch")])
def test_sigkill_inside_a_save_then_resume_equals_uninterrupted(twin, point, request, tmp_path):
    cfg, ref, _ = request.getfixturevalue(FIXTURE[twin])
    cfg = cfg.replace(out=str(tmp_path / "run"), tensorboard=False, cpu_devices=4)
    marker = tmp_path / "in_save"
    module = {"jax": "flax_cnn.train", "torch": "torch_ref.train"}[twin]
    # --cpu-devices 4 as in this pytest process: XLA:CPU's reduction order depends on the client.
    proc = subprocess.Popen([sys.executable, "-m", "tests.fault_child", point, "11", str(marker), module,
                             *cli_args(cfg), "--cpu-devices", "4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the run never reached the save of step 11: " + (
        proc.stderr.read() if proc.poll() is not None else "still running")
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    ck = tmp_path / "run" / "checkpoints"
    partial = sorted(p.name for p in ck.iterdir() if not p.name.isdigit())
    assert steps(ck) == [6, 8] and len(partial) == 1 and partial[0].startswith("11."), partial  # half of step 11

    logs = []
    if twin == "jax":
        from flax_cnn.training.trainer import train_and_evaluate
    else:
        from torch_ref.trainer import train_and_evaluate
    train_and_evaluate(cfg.replace(resume=True), log=logs.append)
    assert f"resuming {tmp_path / 'run'} at epoch 2, step 0/8" in logs
    assert same_metrics(tmp_path / "run", ref) and _same_weights(tmp_path / "run", ref)
    assert steps(ck) == [14, 16] and all(p.name.isdigit() for p in ck.iterdir())  # the partial save is gone


@pytest.mark.parametrize("twin", ["jax", "torch"])
def test_a_checkpoint_without_checksums_is_restored_unverified(twin, request, tmp_path, capsys):
    """As one written before checksums existed, or by a save killed between its data and checksums.json."""
    cfg, ref, _ = request.getfixturevalue(FIXTURE[twin])
    run = copy_run(ref, tmp_path / "run")
    (run / "checkpoints" / "16" / "checksums.json").unlink()
    rc, out, err = train_cli(twin, cli_args(cfg.replace(out=str(run)), resume=True), capsys)
    assert rc == 0 and err == [], err
    assert "checkpoint 16 has no checksums.json (written before checksums were, or its save was cut short " \
           "just after the data): restored without verification" in out
    assert "this run already finished 2 epochs; nothing to do." in out


def test_a_finished_run_resumed_again_does_nothing(uninterrupted, tmp_path, capsys):
    cfg, ref, _ = uninterrupted
    run = copy_run(ref, tmp_path / "run")
    before = snapshot(run)
    rc, out, _ = train_cli("jax", cli_args(cfg.replace(out=str(run)), resume=True), capsys)
    assert rc == 0 and "this run already finished 2 epochs; nothing to do." in out
    assert snapshot(run) == before
