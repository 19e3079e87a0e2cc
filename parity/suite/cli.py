"""`python -m parity`: is the JAX port the same model as the PyTorch one? A table of checks, each
with its measured error and tolerance; exit status 0 only if every check passes."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Literal

import tyro

from parity.suite.results import FAMILIES


@dataclass(frozen=True)
class ParityArgs:
    """Prove the Flax twin and the torch twin are the same model: forward, per-layer, gradient,
    BatchNorm statistics, LR schedule, a 100-step training trajectory, and test accuracy."""

    checkpoint: str | None = None
    """Run directory of either trainer (config.json, data.json, weights); default: random weights."""
    which: Literal["final", "best"] = "final"
    """With --checkpoint: the run's final weights (model.safetensors) or its best (best.safetensors)."""
    float64: bool = False
    """Also run forward, layers and gradient in float64 to 1e-12 (the float32 residue is rounding)."""
    json: str | None = None
    """Write every check with its numbers, and the trajectory's loss curves, to this file."""
    plot: str | None = None
    """Write the trajectory's loss curves of both twins to this PNG."""
    small: bool = False
    """CI size: a 4-layer model (unless --checkpoint), batch 8, 5 trajectory steps, 200 test images."""
    steps: int | None = None
    """Trajectory steps (default 100; 5 with --small)."""
    batch_size: int | None = None
    """Batch size of every check that trains (default 32; 8 with --small)."""
    test_examples: int | None = None
    """Evaluate accuracy on this many test images (default all 10,000; 200 with --small)."""
    data_dir: str | None = None
    """CIFAR-10 (official binary layout); default $CIFAR10_DIR or ../shared/data/cifar10. Without it
    the batches are random normal images and the accuracy family is skipped."""
    families: tuple[str, ...] = FAMILIES
    """Families to run."""
    trajectory_dtype: Literal["float64", "float32"] = "float64"
    """float32 shows how fast rounding alone drives two Adam runs apart (it fails the 1e-4 check)."""
    seed: int = 0
    """Seed of the random weights and random batches."""
    verbose: bool = False
    """Also print every layer's error."""


def small_model():
    """A 4-layer net with a stride-2, a depthwise-separable and a dilated conv: compiles in seconds."""
    from flax_cnn.model.config import BlockSpec, ConvSpec, ModelConfig

    return ModelConfig(blocks=(BlockSpec("c1", (ConvSpec(8), ConvSpec(16, stride=2))),
                               BlockSpec("c2", (ConvSpec(16, separable=True), ConvSpec(16, dilation=2)))))


def load_run(run_dir: str, which: str = "final"):
    """(ModelConfig, TrainConfig, weights path, Normalisation) of a run directory of either trainer."""
    from flax_cnn.inference.run_dir import RunDir
    from parity.suite.data import Normalisation

    run = RunDir.open(run_dir)
    norm = Normalisation(tuple(run.stats.mean), tuple(run.stats.std), f"{run.path}/data.json (train-split statistics)")
    return run.model_config, run.config, run.weights(which), norm


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    args = tyro.cli(ParityArgs, args=argv, prog="python -m parity")
    from flax_cnn.model.config import ConfigError
    from flax_cnn.data.errors import DataError

    start = time.perf_counter()
    try:
        report = run(args)
    except (ConfigError, DataError, ValueError, FileNotFoundError) as e:
        print(f"python -m parity: error: {e}", file=sys.stderr)
        return 2
    report.meta["wall_seconds"] = time.perf_counter() - start
    _print(report, args)
    if args.json:
        from parity.suite.report import write_json

        write_json(report, args.json)
    if args.plot:
        from parity.suite.report import plot_curves

        if not plot_curves(report, args.plot):
            print("(no trajectory ran: no plot written)", file=sys.stderr)
    return 0 if report.passed else 1


def run(args: ParityArgs):
    """Build the pair and its inputs from the arguments, and run the suite."""
    import jax

    from flax_cnn.model.config import ModelConfig
    from flax_cnn.training.config import TrainConfig
    from parity.suite import data
    from parity.suite.pair import project_twins
    from parity.suite.runner import SuiteInputs, SuiteOptions, run_suite
    from parity.suite.schedule import default_cases

    bad = set(args.families) - set(FAMILIES)
    if bad:
        raise ValueError(f"--families: unknown {sorted(bad)}; choose from {', '.join(FAMILIES)}")
    steps = args.steps or (5 if args.small else 100)
    batch = args.batch_size or (8 if args.small else 32)
    limit = args.test_examples or (200 if args.small else None)
    data_dir = data.find_data_dir(args.data_dir)
    if args.data_dir and data_dir is None:
        raise FileNotFoundError(f"--data-dir {args.data_dir}: no such directory")

    if args.checkpoint:
        mcfg, tcfg, weights, norm = load_run(args.checkpoint, args.which)
        what = f"checkpoint {weights}"
    else:
        mcfg, tcfg, weights = (small_model() if args.small else ModelConfig()), TrainConfig(seed=args.seed), None
        norm, what = data.Normalisation(), "random weights"
    # The main pair has no dropout: the trajectory family trains both twins' own step functions,
    # which would draw different masks; dropout_pair (same masks injected) keeps the model's rate.
    pair = project_twins(mcfg.replace(dropout=0.0), weights=weights, seed=args.seed)
    drop = mcfg.dropout if mcfg.dropout > 0 else 0.2
    dropout_pair = project_twins(mcfg.replace(dropout=drop), weights=weights, seed=args.seed)

    n_batches = max(steps, 3)
    if data_dir is not None:
        batches = data.cifar_batches(data_dir, n_batches, batch, norm)
        pair.notes.append(f"batches: the first {n_batches * batch} CIFAR-10 training images of {data_dir} "
                          f"(no augmentation), normalised by {norm.source}")
    else:
        batches = data.random_batches(n_batches, batch, shape=(mcfg.in_channels, mcfg.input_size, mcfg.input_size),
                                      num_classes=mcfg.num_classes, seed=args.seed)
        pair.notes.append("batches: random normal images and labels (no CIFAR-10 found)")
    test = None
    if "accuracy" in args.families and data_dir is not None:
        test = data.cifar_test(data_dir, norm, limit)
        pair.notes.append(f"accuracy: {len(test[1])} CIFAR-10 test images, {what}")
    options = SuiteOptions(families=tuple(args.families), float64=args.float64, bn_steps=3,
                           schedule_cases=default_cases(small=args.small), trajectory_dtype=args.trajectory_dtype)
    inputs = SuiteInputs(batches[:steps], tcfg, test, what)
    report = run_suite(pair, inputs, options, dropout_pair=dropout_pair,
                       log=lambda s: print(f"  {s}", file=sys.stderr, flush=True))
    report.meta.update({"model": "small (4 layers)" if args.small and not args.checkpoint else "ModelConfig()"
                        if not args.checkpoint else str(args.checkpoint), "weights": what,
                        "params": sum(p.numel() for p in pair.torch_model.parameters()),
                        "batch_size": batch, "trajectory_steps": steps, "float64": args.float64,
                        "device": str(jax.devices()[0]), "model_config": mcfg.to_dict()})
    return report


def _print(report, args: ParityArgs) -> None:
    from parity.suite.report import format_table

    m = report.meta
    print(f"parity: {m['model']} ({m['params']:,} params), {m['weights']}, batch {m['batch_size']}, "
          f"{m['trajectory_steps']} trajectory steps, float32{' + float64' if m['float64'] else ''} on "
          f"{m['device']}")
    for n in report.notes:
        print(f"  {n}")
    print()
    print(format_table(report))
    if args.verbose:
        for c in report.checks:
            for row in c.details.get("layers", []):
                print(f"  {c.family} {c.name[:24]:24s} {row['layer']:40s} {row['error']:.2e}")
    print(f"wall time {m['wall_seconds']:.1f} s")
