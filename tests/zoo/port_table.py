"""`python -m tests.zoo.port_table`: `parity port --check` on every zoo model, as a markdown table.

One row per (model, batch): the worst float32 check relative to its allowance, the Flax float32
error and torch float32's own error there, the float64 agreement, the verdict and the seconds the
port and the check took (one torch thread; CPU time is shared on a busy machine, wall time shown).
"""

from __future__ import annotations

import argparse
import time

import torch

from parity.port import port
from parity.port.check import CHECK_FAMILIES, CheckInputs, run_checks
from parity.suite import compiled
from parity.suite.report import float64_agreement
from tests.zoo import MODERN, ZOO
from tests.zoo.centernet import centernet


def row(name: str, factory, batch: int, candidates: int) -> str:
    torch.manual_seed(0)
    model = factory()
    start = time.perf_counter()
    result = port(model, torch.randn(2, 3, 32, 32))
    report = run_checks(model, result, (batch, 3, 32, 32), families=CHECK_FAMILIES, float64=True,
                        inputs=CheckInputs(count=candidates))
    seconds = time.perf_counter() - start
    f32 = [c for c in report.checks if "[float32]" in c.name and c.tol > 0]
    worst = max(f32, key=lambda c: c.error / c.tol)
    own = worst.details.get("torch_error", float("nan"))
    verdict = "PASS" if report.passed else "FAIL"
    return (f"| {name} | {batch} | {worst.family}: {worst.name.split(' [')[0]} | {worst.error:.2e} | {own:.2e} | "
            f"{float64_agreement(report):.1e} | {verdict} | {seconds:.0f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.zoo.port_table", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="zoo entries (default: all, classic, modern and CenterNet)")
    parser.add_argument("--batch", type=int, nargs="+", default=[2])
    parser.add_argument("--candidates", type=int, default=2, help="batches the gradient family may choose from")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    zoo = {**ZOO, **MODERN, "centernet": centernet}
    print("| model | batch | worst float32 check | Flax f32 error | torch f32 own | float64 | verdict | s |")
    print("| --- | ---: | --- | ---: | ---: | ---: | --- | ---: |")
    for name in args.names or zoo:
        for b in args.batch:
            print(row(name, zoo[name], b, args.candidates), flush=True)
        # Forget this model's executables: each holds LLVM code mappings, and ~45 models' worth in one
        # process ran out of them ("LLVM compilation error: Cannot allocate memory", vm.max_map_count 65530).
        compiled.clear()


if __name__ == "__main__":
    main()
