"""`scripts/gpu_check.sh`: its plan on a GPU (commands, limits, goals), and the whole script at toy size on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parity import gpu_check
from parity.time_to import time_to_target

REPO = Path(__file__).resolve().parents[1]


def _rows(accuracies, seconds=10.0):
    return [{"epoch": i + 1, "test_accuracy": a, "epoch_seconds": seconds} for i, a in enumerate(accuracies)]


def test_time_to_target_counts_every_epoch_up_to_the_first_at_target():
    t = time_to_target(_rows([0.5, 0.84, 0.851, 0.9]), 0.85, arrivals={3: 41.5})
    assert t["reached"] and t["epoch"] == 3 and t["epoch_seconds_to_target"] == 30.0
    assert t["process_seconds_to_target"] == 41.5 and t["best_test_accuracy"] == 0.9
    never = time_to_target(_rows([0.5, 0.6]), 0.85)
    assert not never["reached"] and never["epoch"] is None and never["epochs_run"] == 2


def test_plan_on_a_gpu_times_both_batch_sizes_trains_with_the_defaults_and_turns_tf32_off(tmp_path):
    cfg = gpu_check.GpuCheckConfig(out=str(tmp_path), data_dir=str(tmp_path))
    (tmp_path / "test_batch.bin").touch()
    plan = gpu_check.commands(cfg, tmp_path)
    bench = [cmd for _, cmd, _, _ in plan["bench"]]
    assert [c[c.index("--batch-size") + 1] for c in bench] == ["128", "512"] and all("--no-tf32" in c for c in bench)
    assert all("--frameworks" not in c for c in bench)  # every row, fp32 and bf16
    (_, train, _, watch), = plan["train"]
    assert "--epochs" not in train and train[train.index("--augment") + 1] == "device"  # the trainer's own epochs
    assert watch == tmp_path / "train" / "metrics.jsonl"
    assert all(env["NVIDIA_TF32_OVERRIDE"] == "0" and env["JAX_DEFAULT_MATMUL_PRECISION"] == "highest"
               for _, _, env, _ in plan["parity"])
    limits, budget = gpu_check.limits(cfg)
    names = [name for stage in plan.values() for name, _, _, _ in stage]
    assert set(names) <= set(limits) and sum(limits[n] for n in names) <= budget <= 480  # 8 minutes in all


def test_goals_compare_jax_with_torch_per_batch_size(tmp_path):
    rows = [{"framework": f, "step_ms_median": ms} for f, ms in
            [("jax_1dev", 2.0), ("torch_eager", 4.0), ("torch_compile", 1.9), ("jax_bf16", 1.0), ("torch_eager_bf16", 3.0)]]
    (tmp_path / "bench_b128.json").write_text(json.dumps({"rows": rows}))
    g = gpu_check.goals(tmp_path, time_to_target(_rows([0.86], seconds=14.0), 0.85))
    assert g["bench_b128"]["jax_speedup_vs_torch_eager"] == 2.0 and g["bench_b128"]["goal_1.5x_torch_eager"]
    assert not g["bench_b128"]["goal_not_slower_than_torch_compile"]
    assert g["bench_b128"]["jax_speedup_vs_torch_eager_bf16"] == 3.0 and g["goal_85pct_in_15s"]


@pytest.mark.slow
@pytest.mark.extended  # 1 min of the 10 CI has; make test-extended runs it
def test_dry_run_runs_every_stage_and_writes_its_results(tmp_path, train_data_dir):
    out = tmp_path / "gpu"
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", str(out), "--dry-run", "--data-dir", train_data_dir],
                          cwd=REPO, env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", PYTHON=sys.executable), capture_output=True, text=True,
                          timeout=1500)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["devices", "bench_b8", "train", "parity_small"]
    assert all(s["ok"] for s in summary["stages"])
    assert json.loads((out / "devices.json").read_text())["jax_backend"]
    assert {r["framework"] for r in json.loads((out / "bench_b8.json").read_text())["rows"]} == {"jax_1dev", "torch_eager"}
    assert json.loads((out / "parity_small.json").read_text())["passed"]
    t = json.loads((out / "time_to_85.json").read_text())  # --dry-run times to 0 % so that the path runs
    assert t["reached"] and t["epoch"] == 1 and 0 < t["epoch_seconds_to_target"] <= t["process_seconds_to_target"]
    assert "goal_85pct_in_15s" in summary["goals"] and "| bench_b8 |" in (out / "summary.md").read_text()
