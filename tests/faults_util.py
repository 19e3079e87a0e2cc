"""Helpers of the fault tests: the trainers' CLIs in this process, run copies, damage, snapshots."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from flax_cnn.training.report import read_metrics
from flax_cnn.training.config import TrainConfig
from tests.train_fixtures import math_only

PROG = {"jax": "python -m flax_cnn.train", "torch": "python -m torch_ref.train"}


def cli_args(cfg: TrainConfig, **extra) -> list[str]:
    """The flags that make `cfg` (the trainer tests' small run) on the command line."""
    args = ["--data-dir", cfg.data_dir, "--model", cfg.model, "--out", cfg.out, "--epochs", str(cfg.epochs),
            "--batch-size", str(cfg.batch_size), "--train-examples", str(cfg.train_examples),
            "--test-examples", str(cfg.test_examples), "--eval-batch-size", str(cfg.eval_batch_size),
            "--max-lr", str(cfg.max_lr), "--no-progress", "--checkpoint-every", str(cfg.checkpoint_every),
            "--log-every", str(cfg.log_every), "--devices", str(cfg.devices)]
    for k, v in extra.items():
        args += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return args


def train_cli(twin: str, argv: list[str], capsys) -> tuple[int, str, list[str]]:
    """Run a trainer's command line in this process: (exit code, stdout, stderr lines).

    The JAX one skips only its device setup (this process's 4 CPU devices are already up).
    """
    from flax_cnn.training.cli import run_main

    if twin == "jax":
        from flax_cnn.train import _train
    else:
        from torch_ref.train import _train
    capsys.readouterr()
    rc = run_main(_train, argv, prog=PROG[twin], description="")
    out, err = capsys.readouterr()
    return rc, out, [ln for ln in err.splitlines() if ln.strip()]


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def truncate(path: Path, size: int = 20) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def snapshot(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `root` (to show nothing changed)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def same_metrics(a: Path, b: Path) -> bool:
    return math_only(read_metrics(a / "metrics.jsonl")) == math_only(read_metrics(b / "metrics.jsonl"))


def steps(root: Path) -> list[int]:
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit())
