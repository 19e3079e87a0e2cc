"""`python -m parity` end to end at CI size: exit status, the table, the JSON families and curves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from parity.suite.cli import main
from parity.suite.results import FAMILIES

REPO = Path(__file__).resolve().parents[1]


def test_cli_small_run_passes_and_writes_every_family(train_data_dir, tmp_path):
    out = tmp_path / "parity.json"
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1")
    proc = subprocess.run([sys.executable, "-m", "parity", "--small", "--steps", "5", "--batch-size", "4",
                           "--test-examples", "100", "--data-dir", str(train_data_dir), "--json", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(ln.split()[:6] == ["family", "check", "error", "torch_own", "allowed", "result"] for ln in lines)
    assert any(ln.startswith("PASS: ") for ln in lines)
    d = json.loads(out.read_text())
    assert d["passed"] is True and d["failed_families"] == []
    assert {c["family"] for c in d["checks"]} == set(FAMILIES)
    assert not any(c["status"] == "skip" for c in d["checks"])  # data was given: accuracy ran
    assert len(d["curves"]["loss_torch"]) == len(d["curves"]["loss_jax"]) == 5
    assert d["meta"]["weights"] == "random weights" and "random" in " ".join(d["notes"])


def test_cli_rejects_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path), "--families", "schedule"]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_cli_on_a_trained_torch_run_evaluates_it_in_both_twins(torch_run, train_data_dir, tmp_path, capsys):
    """--checkpoint reads the run's architecture, normalisation and weights (here the torch twin's)."""
    _, run_dir, summary = torch_run
    out = tmp_path / "acc.json"
    rc = main(["--checkpoint", str(run_dir), "--which", "best", "--families", "forward", "accuracy",
               "--data-dir", str(train_data_dir), "--test-examples", "200", "--json", str(out)])
    assert rc == 0, capsys.readouterr()
    d = json.loads(out.read_text())
    (acc,) = [c for c in d["checks"] if c["name"].startswith("accuracy difference")]
    # the trainer evaluated the same best weights on the same 200 test images
    assert acc["details"]["accuracy_torch"] == summary["best_test_accuracy"]
    assert acc["details"]["disagreements"] == 0 and acc["error"] == 0.0
    assert d["meta"]["weights"].endswith("best.safetensors")
