"""`bash scripts/gpu_check.sh OUTDIR`: what a session with a lent GPU measures, in at most 8 minutes.

Stages, each a subprocess with its own time limit and log under OUTDIR (a stage that fails or runs out
of time is recorded and the next one runs; limits are cut to fit the overall budget):

1. devices — what JAX and torch see (`devices.json`);
2. bench — `parity.bench` at B=128 and B=512 in float32 (TF32 off) and bf16, every row
   (`bench_b128.json`, `bench_b512.json` and their PNGs), one process per batch size;
3. train — a full default training run (`python -m flax_cnn.train`, the trainer's own default epochs
   and recipe) with `--augment device` in `train/`, timed to the first epoch at >= 85 % test accuracy
   (`time_to_85.json`: by the trainer's epoch_seconds, compilation included, and by the clock from launch);
4. parity — the parity suite on the device with TF32 off (`NVIDIA_TF32_OVERRIDE=0`, JAX matmul precision
   "highest"): the small net with float64, then the default model's forward/layers/gradient/bf16
   (`parity_small.json`, `parity_default.json`).

`summary.json` / `summary.md` collect each stage's status and the issue's goals: JAX >= 1.5x torch eager
and not slower than torch.compile (train step, float32), 85 % in <= 15 s including compilation.
`--dry-run` runs every stage at toy sizes (a tiny model, B=8, one epoch): what the CPU tests exercise.
Nothing here imports JAX or torch: the stages own the device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import tyro

STAGES = ("devices", "bench", "train", "parity")


@dataclass(frozen=True)
class GpuCheckConfig:
    """Benchmark, parity suite and a timed training run on a lent GPU (bash scripts/gpu_check.sh OUTDIR)."""

    out: Annotated[str, tyro.conf.Positional]
    """Directory for every result (created)."""
    data_dir: str | None = None
    """CIFAR-10 for the training run (default $CIFAR10_DIR, else ../shared/data/cifar10 beside the repo)."""
    stages: tuple[str, ...] = STAGES
    """Which stages to run, in this order: devices, bench, train, parity."""
    budget_s: int = 470
    """Wall-clock budget of all stages together (8 minutes minus a margin for start-up)."""
    batch_sizes: tuple[int, ...] = (128, 512)
    """Batch sizes of the bench stage (one process each)."""
    target: float = 0.85
    """Test accuracy the training run is timed to."""
    dry_run: bool = False
    """Toy sizes everywhere, CPU-sized limits (minutes on 2 busy cores): checks the script, not the machine."""


# The most each process may take (seconds; they sum to the budget). Training may also use the time the
# processes before it saved: its length is the least predictable, and its number is the headline.
LIMITS = {"devices": 30, "bench_b128": 100, "bench_b512": 100, "train": 160, "parity_small": 40, "parity_default": 40}
ELASTIC = "train"
DRY_RUN_SCALE = 5  # --dry-run on a shared 2-core CPU: compiles take tens of seconds


def limits(cfg: GpuCheckConfig) -> tuple[dict[str, float], float]:
    """(per-process limits, overall budget) in seconds; a process not listed gets 100."""
    scale = DRY_RUN_SCALE if cfg.dry_run else 1
    lim = {k: scale * v for k, v in LIMITS.items()}
    return lim, max(cfg.budget_s, sum(lim.values())) if cfg.dry_run else cfg.budget_s


def _env(**extra: str) -> dict[str, str]:
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", **extra)
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


NO_TF32 = {"NVIDIA_TF32_OVERRIDE": "0", "JAX_DEFAULT_MATMUL_PRECISION": "highest"}
SHARED = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.45"}  # JAX and torch in one process: leave torch half the GPU


def data_dir(cfg: GpuCheckConfig) -> Path | None:
    here = Path(__file__).resolve().parents[2]
    d = Path(cfg.data_dir or os.environ.get("CIFAR10_DIR") or here / "shared" / "data" / "cifar10")
    return d if (d / "test_batch.bin").is_file() else None


def run_stage(name: str, cmd: list[str], out: Path, limit: float, env: dict[str, str], watch: Path | None = None) -> dict:
    """Run `cmd` with `limit` seconds, output to `out/<name>.log`; with `watch`, time each new metrics row."""
    log = out / f"{name}.log"
    start = time.monotonic()
    arrivals: dict[int, float] = {}
    with log.open("w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).resolve().parents[1])
        timed_out = False
        while proc.poll() is None:
            if watch is not None:
                from parity.time_to import read_rows

                for r in read_rows(watch):
                    arrivals.setdefault(r["epoch"], time.monotonic() - start)
            if time.monotonic() - start > limit:
                proc.kill()
                timed_out = True
                break
            time.sleep(0.2)
        rc = proc.wait()
    if watch is not None:
        from parity.time_to import read_rows

        for r in read_rows(watch):
            arrivals.setdefault(r["epoch"], time.monotonic() - start)
    return {"stage": name, "rc": rc, "ok": rc == 0 and not timed_out, "timed_out": timed_out,
            "seconds": round(time.monotonic() - start, 1), "limit_s": round(limit, 1), "log": log.name,
            **({"metrics_arrivals_s": {str(k): round(v, 2) for k, v in arrivals.items()}} if watch else {})}


def commands(cfg: GpuCheckConfig, out: Path) -> dict[str, list[tuple[str, list[str], dict, Path | None]]]:
    """Per stage: its (name, command, extra environment, metrics file to watch) subprocesses."""
    py = sys.executable
    dry = cfg.dry_run
    bench_small = ["--steps", "1", "--reps", "1", "--warmup", "0", "--frameworks", "jax_1dev", "torch_eager",
                   "--peak-size", "128", "--peak-steps", "1"] if dry else ["--reps", "5", "--steps", "10"]
    bench = [(f"bench_b{b}", [py, "-m", "parity.bench", "--batch-size", str(b), "--no-pipeline", "--no-tf32",
                              "--json", str(out / f"bench_b{b}.json"), "--plot", str(out / f"bench_b{b}.png"),
                              *bench_small], SHARED, None)
             for b in ((8,) if dry else cfg.batch_sizes)]
    d = data_dir(cfg)
    train_dir = out / "train"
    train = [py, "-m", "flax_cnn.train", "--out", str(train_dir), "--augment", "device", "--no-progress"]
    if d is not None:
        train += ["--data-dir", str(d)]
    if dry:
        model = out / "tiny_model.json"
        model.write_text(json.dumps(_tiny_model()))
        train += ["--model", str(model), "--epochs", "1", "--batch-size", "32", "--train-examples", "256",
                  "--test-examples", "200", "--eval-batch-size", "100", "--checkpoint-every", "0"]
    parity = [("parity_small", [py, "-m", "parity", "--small", "--float64", "--json", str(out / "parity_small.json")]
               + (["--families", "forward", "bf16"] if dry else []), {**NO_TF32, **SHARED},
               None)]
    if not dry:
        parity.append(("parity_default", [py, "-m", "parity", "--float64", "--families", "forward", "layers",
                                          "gradient", "bf16", "--json", str(out / "parity_default.json")],
                       {**NO_TF32, **SHARED}, None))
    return {"devices": [("devices", [py, "-m", "parity.device_info", str(out / "devices.json")], {}, None)],
            "bench": bench, "train": [("train", train, {}, train_dir / "metrics.jsonl")] if d is not None else [],
            "parity": parity}


def _tiny_model() -> dict:
    from flax_cnn.model.config import BlockSpec, ConvSpec, ModelConfig

    return ModelConfig(blocks=(BlockSpec("c1", (ConvSpec(8), ConvSpec(16, stride=2))),
                               BlockSpec("c2", (ConvSpec(16, separable=True), ConvSpec(16, dilation=2))))).to_dict()


def goals(out: Path, train: dict | None) -> dict:
    """The issue's GPU goals, from whichever results exist."""
    from flax_cnn.training.config import TrainConfig

    g: dict = {"default_epochs": TrainConfig().epochs}
    for path in sorted(out.glob("bench_b*.json")):
        rows = {r["framework"]: r for r in json.loads(path.read_text())["rows"]}
        jax_row = rows.get("jax_1dev") or rows.get("jax")
        b = path.stem.removeprefix("bench_b")
        entry = {}
        for ref in ("torch_eager", "torch_compile", "torch_eager_bf16", "torch_compile_bf16"):
            mine = rows.get("jax_bf16") if ref.endswith("bf16") else jax_row
            if mine and ref in rows:
                entry[f"jax_speedup_vs_{ref}"] = round(rows[ref]["step_ms_median"] / mine["step_ms_median"], 3)
        if "jax_speedup_vs_torch_eager" in entry:
            entry["goal_1.5x_torch_eager"] = entry["jax_speedup_vs_torch_eager"] >= 1.5
        if "jax_speedup_vs_torch_compile" in entry:
            entry["goal_not_slower_than_torch_compile"] = entry["jax_speedup_vs_torch_compile"] >= 1.0
        g[f"bench_b{b}"] = entry
    if train is not None:
        g["time_to_target"] = train
        if train.get("reached"):
            g["goal_85pct_in_15s"] = train["epoch_seconds_to_target"] <= 15.0
    return g


def summary_md(results: list[dict], g: dict, out: Path) -> str:
    """Stages, every bench row, and the goals, for people."""
    lines = ["| stage | ok | seconds | limit | rc | log |", "| --- | --- | ---: | ---: | ---: | --- |"]
    lines += [f"| {r['stage']} | {'yes' if r['ok'] else 'TIMED OUT' if r['timed_out'] else 'no'} | {r['seconds']} | "
              f"{r['limit_s']} | {r['rc']} | {r['log']} |" for r in results]
    for path in sorted(out.glob("bench_b*.json")):
        d = json.loads(path.read_text())
        lines += ["", f"{path.name}: {d['machine'].get('isa')}; TF32 "
                      f"{'on' if d['config'].get('tf32') else 'off'}", "",
                  "| row | B | step ms (median) | images/s | compile s | fraction of peak |",
                  "| --- | ---: | ---: | ---: | ---: | --- |"]
        lines += [f"| {r['framework']} | {r['batch_size']} | {r['step_ms_median']} | {r['images_per_second']} | "
                  f"{r['compile_s']} | {r['fraction_of_peak']} ({r['peak']}) |" for r in d["rows"]]
    lines += ["", "```json", json.dumps(g, indent=2), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cfg = tyro.cli(GpuCheckConfig, args=argv, prog="bash scripts/gpu_check.sh")
    bad = [s for s in cfg.stages if s not in STAGES]
    if bad:
        print(f"gpu_check: unknown --stages {bad} (choose from {', '.join(STAGES)})", file=sys.stderr)
        return 2
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    plan = commands(cfg, out)
    limit_of, budget = limits(cfg)
    deadline = time.monotonic() + budget
    results, train = [], None
    stages = [s for s in STAGES if s in cfg.stages]
    if "train" in stages and not plan["train"]:
        results.append({"stage": "train", "rc": None, "ok": False, "timed_out": False, "seconds": 0, "limit_s": 0,
                        "log": "-", "skipped": "no CIFAR-10 found (--data-dir or $CIFAR10_DIR)"})
    queue = [job for stage in stages for job in plan[stage]]
    for i, (name, cmd, extra, watch) in enumerate(queue):
        # the processes after this one keep their limits in reserve
        left = deadline - time.monotonic() - sum(limit_of.get(j[0], 100) for j in queue[i + 1:])
        limit = max(1.0, left if name == ELASTIC else min(limit_of.get(name, 100), left))
        print(f"gpu_check: {name} (limit {limit:.0f} s)", flush=True)
        r = run_stage(name, cmd, out, limit, _env(**extra), watch)
        results.append(r)
        print(f"gpu_check: {name}: {'ok' if r['ok'] else 'FAILED'} in {r['seconds']} s", flush=True)
        if watch is not None:
            from parity.time_to import read_rows, time_to_target

            arrivals = {int(k): v for k, v in r["metrics_arrivals_s"].items()}
            train = time_to_target(read_rows(watch), 0.0 if cfg.dry_run else cfg.target, arrivals)
            train["completed"] = r["ok"]
            (out / "time_to_85.json").write_text(json.dumps(train, indent=2) + "\n")
    g = goals(out, train)
    (out / "summary.json").write_text(json.dumps({"config": asdict(cfg), "stages": results, "goals": g},
                                                 indent=2) + "\n")
    (out / "summary.md").write_text(summary_md(results, g, out))
    print(summary_md(results, g, out))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
