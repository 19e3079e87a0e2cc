"""`python -m tests.zoo.inventory`: every zoo model's parameters, forward+backward time and idioms.

Each model is built under seed 0, run forward at batch 2 and 8 in train and eval mode (shape
checked), backpropagated once, then timed: the median of `--repeats` forward+backward passes at
batch 8 in train mode, on `--threads` torch threads, as wall time and as this process's CPU time
(the machine is shared: CPU time is what the model costs, wall time what a test waited).
`--modern` lists the opt-in MODERN zoo instead, each checked against its own output shape; its
rows show only idioms read from the module tree and the forward (all MODERN models share one
source file, so source patterns would be the file's, not the model's).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch

from tests.zoo import MODERN, MODERN_OUTPUT, ZOO
from tests.zoo.idioms import SOURCE, idioms_of


@dataclass(frozen=True)
class Row:
    name: str
    params: int
    wall_ms: float
    cpu_ms: float
    idioms: list[str]


def exercise(model: torch.nn.Module, out_shape: tuple[int, ...] = (10,)) -> None:
    """Forward at batch 2 and 8 in both modes, one backward; AssertionError on a wrong output shape."""
    for training in (True, False):
        model.train(training)
        for n in (2, 8):
            with torch.set_grad_enabled(training):
                out = model(torch.randn(n, 3, 32, 32))
            assert out.shape == (n, *out_shape), f"{type(model).__name__}: output {tuple(out.shape)} at batch {n}"
    model.train()
    model(torch.randn(8, 3, 32, 32)).sum().backward()


def time_step(model: torch.nn.Module, repeats: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of one train-mode forward+backward at batch 8."""
    x = torch.randn(8, 3, 32, 32)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        model(x).sum().backward()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return 1000 * statistics.median(wall), 1000 * statistics.median(cpu)


def row(name: str, repeats: int) -> Row:
    factory = ZOO[name] if name in ZOO else MODERN[name]
    torch.manual_seed(0)
    model = factory()
    exercise(model, MODERN_OUTPUT.get(name, (10,)))
    idioms = [i for i in idioms_of(factory, model) if name in ZOO or i not in SOURCE]
    return Row(name, sum(p.numel() for p in model.parameters()), *time_step(model, repeats), idioms)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.zoo.inventory", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="zoo entries (default: all of ZOO, or of MODERN with --modern)")
    parser.add_argument("--modern", action="store_true", help="list the opt-in MODERN zoo instead of ZOO")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} forward+backward at batch 8")
    print(f"| {'name':<18} | {'params':>8} | {'wall ms':>7} | {'cpu ms':>7} | idioms |")
    print(f"| {'-' * 18} | {'-' * 7}: | {'-' * 6}: | {'-' * 6}: | --- |")
    for name in args.names or (MODERN if args.modern else ZOO):
        r = row(name, args.repeats)
        idioms = ", ".join(r.idioms)
        print(f"| {r.name:<18} | {r.params:>8,} | {r.wall_ms:>7.1f} | {r.cpu_ms:>7.1f} | {idioms} |", flush=True)


if __name__ == "__main__":
    main()
