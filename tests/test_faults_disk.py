"""A full disk: at a checkpoint and at the metrics write the run stops with one line (exit 1), the
previous checkpoint stays intact, and `--resume` once there is space ends as an uninterrupted run."""

from __future__ import annotations

import errno
import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.faults_util import PROG, cli_args, same_metrics, steps, train_cli

FIXTURE = {"jax": "uninterrupted", "torch": "torch_run"}
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _fill_checkpoint(twin: str, step: int, monkeypatch) -> None:
    """The disk fills while checkpoint `step` is written (the error each writer raises on a full disk)."""
    if twin == "jax":  # orbax's JSON item, written with Python's file API next to the tensors
        from orbax.checkpoint._src.handlers.json_checkpoint_handler import JsonCheckpointHandler

        real = JsonCheckpointHandler._save_fn

        async def save_fn(self, x, directory):
            if f"/checkpoints/{step}." in str(directory):
                raise ENOSPC
            return await real(self, x, directory)

        monkeypatch.setattr(JsonCheckpointHandler, "_save_fn", save_fn)
    else:  # what safetensors raised when the disk was really full (measured on a 600 KiB tmpfs)
        from safetensors import SafetensorError

        from torch_ref import checkpoint

        real = checkpoint.save_file

        def save_file(tensors, path, *a, **k):
            if f"/checkpoints/{step}.tmp/optimizer" in str(path):
                raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
            return real(tensors, path, *a, **k)

        monkeypatch.setattr(checkpoint, "save_file", save_file)


def _fill_metrics(epoch: int, monkeypatch) -> None:
    """The disk fills while metrics.jsonl is rewritten after epoch `epoch`."""
    real = pathlib.Path.write_text

    def write_text(self, data, *a, **k):
        if self.name == "metrics.tmp" and data.count("\n") == epoch:
            raise ENOSPC
        return real(self, data, *a, **k)

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)


def _same_weights(a, b) -> bool:
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("twin", ["jax", "torch"])
def test_full_disk_at_a_checkpoint_then_at_the_metrics_write_and_resume_equals_uninterrupted(
        twin, request, tmp_path, monkeypatch, capsys):
    cfg, ref, _ = request.getfixturevalue(FIXTURE[twin])
    run = tmp_path / "run"
    args = cli_args(cfg.replace(out=str(run)))
    ck = run / "checkpoints"

    with monkeypatch.context() as m:  # 1. checkpoint 11 (epoch 2, step 3) cannot be written
        _fill_checkpoint(twin, 11, m)
        rc, _, err = train_cli(twin, args, capsys)
    assert rc == 1 and err == [
        f"{PROG[twin]}: stopped: no space left on device while writing checkpoint 11 to {ck}: it was not kept "
        "(its partial files are not used and are removed when the run starts again), checkpoint 8 is intact. "
        "Free some space, then run again with --resume"]
    assert steps(ck) == [6, 8]  # the previous ones, as they were

    with monkeypatch.context() as m:  # 2. space again, then the last epoch's metrics.jsonl cannot be written
        _fill_metrics(2, m)
        rc, out, err = train_cli(twin, args + ["--resume"], capsys)
    assert f"resuming {run} at epoch 2, step 0/8" in out
    assert rc == 1 and err == [
        f"{PROG[twin]}: stopped: no space left on device while writing {run / 'metrics.jsonl'}; what was written "
        "before it is intact. Free some space, then run again with --resume"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1 and not (run / "metrics.tmp").exists()
    assert not (run / "summary.json").exists()

    rc, out, err = train_cli(twin, args + ["--resume"], capsys)  # 3. space again: the run's end is written
    assert rc == 0 and err == [], err
    assert "all 2 epochs are trained; writing the final artefacts the last run did not" in out
    assert same_metrics(run, ref) and _same_weights(run, ref) and (run / "summary.json").is_file()
    assert sorted(p.name for p in ck.iterdir()) == ["14", "16"]  # the partial save of step 11 is gone


def _mount_tmpfs(path: pathlib.Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_real_full_filesystem_stops_the_run_and_resume_equals_uninterrupted(uninterrupted, tmp_path, capsys):
    """The JAX trainer on a 600 KiB tmpfs (needs root to mount; skipped otherwise): whichever write
    meets the full disk first (tensorstore inside orbax, safetensors, a plot), the run stops with
    one line, and resumes exactly once the filesystem is grown."""
    cfg, ref, _ = uninterrupted
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "600k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        args = cli_args(cfg.replace(out=str(disk / "run")), keep_checkpoints=6)
        rc, _, err = train_cli("jax", args, capsys)
        assert rc == 1 and len(err) == 1, err
        assert err[0].startswith(f"{PROG['jax']}: stopped: no space left on device while writing "), err
        assert err[0].endswith("Free some space, then run again with --resume"), err
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        rc, out, err = train_cli("jax", args + ["--resume"], capsys)
        assert rc == 0 and err == [], err
        assert same_metrics(disk / "run", ref) and _same_weights(disk / "run", ref)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_anywhere_else_in_a_run_is_one_line_too(capsys):
    """A plot or a weights export (safetensors raises this on a full disk): exit 1, one line."""
    from safetensors import SafetensorError

    from flax_cnn.training.cli import run_main

    def train(cfg):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    assert run_main(train, [], prog="prog", description="") == 1
    assert capsys.readouterr().err.splitlines() == [
        "prog: stopped: no space left on device (SafetensorError: Error while serializing: I/O error: No space left "
        "on device (os error 28)); the checkpoints written before are intact. Free some space, then run again with "
        "--resume"]
