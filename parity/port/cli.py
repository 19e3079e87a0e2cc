"""`python -m parity.port`: port a torch CNN from `pkg.module:factory`, write weights and reports.

Writes DIR/model.safetensors (torch naming), DIR/port_report.{md,json} and DIR/parity_report.{txt,json};
exit status 0 when every parity check passes, 1 when one fails, 2 when the model cannot be ported.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from flax_cnn.runtime.factory import first_line as _first_line, load_factory as _load_factory

PROG = "python -m parity.port"


@dataclass(frozen=True)
class PortArgs:
    """Port a PyTorch CNN to a native Flax NNX module (NHWC), with its weights and a parity report."""

    module: str
    """The torch model: `pkg.module:factory`, a callable (class or function) taking no arguments."""
    input_shape: str
    """Example input (N,C,H,W), e.g. 1,3,32,32: traced once to learn every tensor's shape."""
    out: str
    """Output directory."""
    check: bool = False
    """Run the parity suite's forward, layers, gradient and batchnorm families (default: forward only)."""
    float64: bool = False
    """Also run every check in float64 (agreement to 1e-12 there proves the float32 residue is rounding)."""
    own_weights: bool = False
    """Check with the model's weights as they are (default: random BatchNorm affine parameters and calibrated
    running statistics in a copy, so eval mode and ReLU6 clipping are exercised)."""
    seed: int = 0
    """Seeds torch before the factory is called, and the random check batches."""


def load_factory(spec: str):
    """The callable named by `pkg.module:factory` (ValueError naming what is wrong); the trainers'
    `--torch-model` uses the same loader (`flax_cnn.runtime.factory`)."""
    return _load_factory(spec, flag="--module")


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"--input-shape {text!r}: expected integers like 1,3,32,32") from None
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"--input-shape {text!r}: expected four positive sizes N,C,H,W")
    return shape


def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    """The command line; `prog` names it in usage and errors (`python -m parity port` dispatches here)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    args = tyro.cli(PortArgs, args=argv, prog=prog)
    try:
        return run(args)
    except (ValueError, RuntimeError) as e:  # PortError is a ValueError: one line, no traceback
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


def run(args: PortArgs) -> int:
    import torch

    from parity.port.build import port
    from parity.port.check import CHECK_FAMILIES, DEFAULT_FAMILIES, CheckInputs, run_checks

    shape = parse_shape(args.input_shape)
    factory = load_factory(args.module)
    torch.manual_seed(args.seed)
    try:
        model = factory()
    except Exception as e:
        raise ValueError(f"--module {args.module!r}: calling it failed ({type(e).__name__}: {_first_line(e)})") from e
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"--module {args.module}: returned {type(model).__name__}, not a torch.nn.Module")
    example = torch.randn(*shape, generator=torch.Generator().manual_seed(args.seed))
    out = Path(args.out)
    result = port(model, example, out_dir=out)
    (out / "port_report.md").write_text(result.report.to_markdown())
    (out / "port_report.json").write_text(result.report.to_json() + "\n")
    from flax_cnn.model.trace_stats import trace_stats

    stats = trace_stats(result.module, (shape[2], shape[3], shape[1]))
    rf = f"{stats.receptive_field} px" if stats.receptive_field else f"n/a ({stats.blocked_by})"
    print(f"ported {result.report.model}: {len(result.report.rows)} ops, {result.report.torch_params:,} parameters "
          f"(torch) = {result.report.flax_params:,} (Flax), {stats.macs / 1e6:.2f} M MACs per image, receptive "
          f"field {rf}; wrote {out}/model.py, model.safetensors, port_report.md")

    from parity.suite.report import format_table, write_json

    report = run_checks(model, result, shape, families=CHECK_FAMILIES if args.check else DEFAULT_FAMILIES,
                        float64=args.float64, inputs=CheckInputs(seed=args.seed, own_weights=args.own_weights))
    table = "\n".join(n for n in report.notes if n.startswith("check inputs")) + "\n" + format_table(report)
    (out / "parity_report.txt").write_text(table + "\n")
    write_json(report, out / "parity_report.json")
    print(table)
    return 0 if report.passed else 1
