"""`python -m parity.bench` end to end at the smallest size: rows, keys and memory accounting.

Times are not asserted (machines are shared and noisy): only that the benchmark measures and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flax_cnn.model import analysis
from flax_cnn.model.config import ModelConfig
from parity import bench, peaks
from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[1]
KEYS = {"framework", "batch_size", "device", "step_ms_median", "step_ms_p25", "step_ms_p75", "images_per_second",
        "compile_s", "precision", "gflops", "peak", "fraction_of_peak", "extra"}
ROWS = {"jax_1dev": "jax_fp32", "torch_eager": "torch_fp32", "jax_bf16": "jax_bf16", "torch_eager_bf16": "torch_bf16"}


def test_bench_smallest_run_writes_rows_and_memory(tmp_path, tiny_model_json):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = subprocess.run([sys.executable, "-m", "parity.bench", "--model", tiny_model_json, "--batch-size", "8", "--steps", "1", "--reps", "2",
                           "--warmup", "0", "--frameworks", *ROWS, "--no-pipeline", "--peak-size", "256",
                           "--peak-steps", "1", "--json", str(out), "--plot", str(png)],
                          cwd=REPO, env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    d = json.loads(out.read_text())
    assert ModelConfig.from_dict(d["model_config"]) == TINY and f"model: {tiny_model_json}" in proc.stdout
    rows = {r["framework"]: r for r in d["rows"]}
    assert set(rows) == set(ROWS) and all(set(r) == KEYS for r in rows.values())
    # each row is judged against its own framework's and precision's matmul peak, timed in the same run
    assert set(d["peaks"]) == set(ROWS.values()) and all(p["gflops"] > 0 and p["size"] == 256 for p in d["peaks"].values())
    for fw, r in rows.items():
        assert r["peak"] == ROWS[fw] and r["precision"] == ROWS[fw].split("_")[1]
        assert r["gflops"] == pytest.approx(6 * analysis.macs(TINY) * 8 / r["step_ms_median"] / 1e6, rel=1e-2)
        assert r["fraction_of_peak"] == pytest.approx(r["gflops"] / d["peaks"][r["peak"]]["gflops"], rel=1e-2)
    assert d["machine"]["isa"] == d["machine"]["cpu_isa"] == peaks.cpu_isa() and f"({peaks.cpu_isa()})" in proc.stdout
    assert all(r["batch_size"] == 8 and r["step_ms_median"] > 0 and r["compile_s"] > 0 for r in rows.values())
    assert rows["jax_1dev"]["device"] == "1x cpu"
    # XLA's own accounting of the compiled step: the state (params + Adam moments + BN) is an argument
    assert rows["jax_1dev"]["extra"]["xla_argument_mib"] > 3 * analysis.param_count(TINY) * 4 / 2**20
    assert d["machine"]["torch_threads"] >= 1 and d["machine"]["jax"] and png.stat().st_size > 5_000
    # fresh memory per step is counted for every framework, and the allocator settings are recorded
    assert all(r["extra"]["page_faults_per_step"] >= 0 and r["extra"]["kernel_ms_per_step"] >= 0 for r in rows.values())
    assert all(r["extra"]["cpu_ms_per_step"] >= r["extra"]["kernel_ms_per_step"] for r in rows.values())
    assert len(d["machine"]["load_average_start"]) == len(d["machine"]["load_average_end"]) == 3
    # the first step of each repetition is timed apart from the steady-state median
    assert all(r["extra"]["settle_ms_median"] > 0 for r in rows.values())
    assert set(d["machine"]["malloc"]) == {"glibc_tunables", "transparent_hugepage"}
    assert "vs torch_eager" in proc.stdout and "1.00x" in proc.stdout


def test_a_bad_model_file_stops_with_one_line(tmp_path):
    bad = tmp_path / "arch.json"
    bad.write_text('{"blocks": 3}')
    proc = subprocess.run([sys.executable, "-m", "parity.bench", "--model", str(bad), "--no-pipeline"], cwd=REPO,
                          env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"python -m parity.bench: --model {bad}: not a valid ModelConfig JSON (")


def test_the_default_model_is_timed_without_model():
    assert bench.load_model_config(None) == ModelConfig()


def test_every_row_of_the_issue_is_a_variant_with_its_peak():
    assert {k: v.peak for k, v in bench.VARIANTS.items()} == {
        "jax": "jax_fp32", "jax_1dev": "jax_fp32", "torch_eager": "torch_fp32", "torch_compile": "torch_fp32",
        "jax_bf16": "jax_bf16", "torch_eager_bf16": "torch_bf16", "torch_compile_bf16": "torch_bf16"}
    assert set(bench.BenchConfig().frameworks) == set(bench.VARIANTS)
    assert bench.step_flops(128) == pytest.approx(6 * 39.68e6 * 128, rel=1e-3)  # 39.68 M MACs per image


@pytest.mark.parametrize("flags, isa", [
    ({"avx2", "fma"}, "AVX2"),
    ({"avx2", "avx512f"}, "AVX-512"),
    ({"avx2", "avx512f", "avx512_bf16"}, "AVX-512 (+bf16)"),
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "AVX-512 + AMX-bf16"),
    ({"asimd", "bf16"}, "NEON (+bf16)"),
])
def test_isa_names_the_widest_vector_unit(flags, isa):
    assert peaks.cpu_isa(flags) == isa


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert peaks.cpu_isa(peaks.cpu_flags(info)) == "AVX-512 (+bf16)"
    assert peaks.cpu_flags(tmp_path / "absent") == set()


def test_bench_of_a_torch_model_counts_the_ports_macs(tmp_path):
    """--torch-model: GFLOP/s from the MACs read off its port's program (TinyNet: 442,488 per image)."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "parity.bench", "--torch-model", "tests.test_train_ported:TinyNet",
                           "--batch-size", "8", "--steps", "1", "--reps", "1", "--warmup", "0", "--frameworks",
                           "jax_1dev", "torch_eager", "--no-pipeline", "--peak-size", "256", "--peak-steps", "1",
                           "--json", str(out)],
                          cwd=REPO, env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    d = json.loads(out.read_text())
    flop = 6 * 442_488 * 8
    assert d["step_gflop"] == {"8": pytest.approx(flop / 1e9)} and "2.7 MFLOP per image and step" in proc.stdout
    for r in d["rows"]:
        assert r["gflops"] == pytest.approx(flop / r["step_ms_median"] / 1e6, rel=1e-2)
