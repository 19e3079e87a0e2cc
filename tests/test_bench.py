"""`python -m parity.bench` end to end at the smallest size: rows, keys and memory accounting.

Times are not asserted (machines are shared and noisy): only that the benchmark measures and says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEYS = {"framework", "batch_size", "device", "step_ms_median", "step_ms_p25", "step_ms_p75", "images_per_second",
        "compile_s", "extra"}


def test_bench_smallest_run_writes_rows_and_memory(tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = subprocess.run([sys.executable, "-m", "parity.bench", "--batch-size", "8", "--steps", "1", "--reps", "2",
                           "--warmup", "0", "--frameworks", "jax_1dev", "torch_eager", "--no-pipeline",
                           "--json", str(out), "--plot", str(png)],
                          cwd=REPO, env=dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1"), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    d = json.loads(out.read_text())
    rows = {r["framework"]: r for r in d["rows"]}
    assert set(rows) == {"jax_1dev", "torch_eager"} and all(set(r) == KEYS for r in rows.values())
    assert all(r["batch_size"] == 8 and r["step_ms_median"] > 0 and r["compile_s"] > 0 for r in rows.values())
    assert rows["jax_1dev"]["device"] == "1x cpu"
    # XLA's own accounting of the compiled step: the state (params + Adam moments + BN) is an argument
    assert rows["jax_1dev"]["extra"]["xla_argument_mib"] > 3 * 193_826 * 4 / 2**20
    assert d["machine"]["torch_threads"] >= 1 and d["machine"]["jax"] and png.stat().st_size > 5_000
    # fresh memory per step is counted for every framework, and the allocator settings are recorded
    assert all(r["extra"]["page_faults_per_step"] >= 0 and r["extra"]["kernel_ms_per_step"] >= 0 for r in rows.values())
    # the first step of each repetition is timed apart from the steady-state median
    assert all(r["extra"]["settle_ms_median"] > 0 for r in rows.values())
    assert set(d["machine"]["malloc"]) == {"glibc_tunables", "transparent_hugepage"}
    assert "vs torch_eager" in proc.stdout and "1.00x" in proc.stdout
