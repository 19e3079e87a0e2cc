"""The LR range test with torch-lr-finder's semantics, framework-free around a `step(lr) -> loss`.

Exponential LRs from `start_lr` to `end_lr` over `num_iter` steps, the loss smoothed with
`smooth` (exponential moving average), stopped when it exceeds `diverge_th` × its best; the
suggestion is the LR at the steepest descent of the smoothed loss after dropping the first 10
and last 5 points (torch-lr-finder's `plot(suggest_lr=True)`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable, Iterator

import numpy as np
import tyro

from flax_cnn.model.config import ConfigError
from flax_cnn.training.config import TrainConfig, validate


@dataclass(frozen=True)
class LRFindConfig:
    """LR range test: train a few hundred steps at exponentially growing LRs, plot loss vs LR."""

    train: Annotated[TrainConfig, tyro.conf.arg(name="")] = field(default_factory=TrainConfig)
    start_lr: float = 1e-7
    """First LR of the sweep."""
    end_lr: float = 10.0
    """Last LR of the sweep."""
    num_iter: int = 200
    """Number of steps (one batch each)."""
    smooth: float = 0.05
    """Weight of the new loss in the exponential moving average."""
    diverge_th: float = 5.0
    """Stop when the smoothed loss exceeds this multiple of the best one."""
    plot: str = "lr_find.png"
    """Where to write the loss-vs-LR plot."""
    json: str | None = None
    """Also write the sweep (lrs, losses, suggestion) as JSON."""


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]
    suggested_lr: float | None
    diverged: bool

    def to_dict(self) -> dict:
        return dict(lrs=self.lrs, losses=self.losses, suggested_lr=self.suggested_lr, diverged=self.diverged)


def lr_sweep(start_lr: float, end_lr: float, num_iter: int) -> np.ndarray:
    """torch-lr-finder's ExponentialLR: start · (end/start)^(i/(num_iter-1)), i = 0…num_iter-1."""
    return start_lr * (end_lr / start_lr) ** (np.arange(num_iter) / (num_iter - 1))


def range_test(step: Callable[[int], float], lrs: np.ndarray, *, smooth: float = 0.05,
               diverge_th: float = 5.0, progress: bool = True) -> LRFindResult:
    """Run `step(i)` (one batch at lrs[i], returns its loss) until the end or divergence."""
    from tqdm.auto import tqdm

    used, losses, best, diverged = [], [], math.inf, False
    for i in tqdm(range(len(lrs)), desc="lr range test", disable=not progress):
        loss = float(step(i))
        if losses and smooth > 0:
            loss = smooth * loss + (1 - smooth) * losses[-1]
        if not math.isfinite(loss):
            diverged = True
            break
        best = min(best, loss)
        used.append(float(lrs[i]))
        losses.append(loss)
        if loss > diverge_th * best:
            diverged = True
            break
    return LRFindResult(used, losses, suggest(used, losses), diverged)


def suggest(lrs: list[float], losses: list[float], skip_start: int = 10, skip_end: int = 5) -> float | None:
    """The LR where the smoothed loss falls fastest (None if too few points)."""
    if len(losses) < skip_start + skip_end + 2:
        skip_start, skip_end = 0, 0
    lo, hi = skip_start, len(losses) - skip_end
    if hi - lo < 2:
        return None
    return float(lrs[lo:hi][int(np.gradient(np.asarray(losses[lo:hi])).argmin())])


def plot(result: LRFindResult, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses)
    if result.suggested_lr is not None:
        i = result.lrs.index(result.suggested_lr)
        ax.scatter([result.suggested_lr], [result.losses[i]], color="red", zorder=3,
                   label=f"steepest descent: {result.suggested_lr:.2e}")
        ax.legend()
    ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed training loss", title=title)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def batches(cfg: TrainConfig, n: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`n` augmented training batches of `cfg`, continuing into further epochs as needed."""
    from flax_cnn.training import run_data

    data = run_data.prepare(cfg)
    got, epoch = 0, 0
    try:
        while got < n:
            for b in data.train.epoch(epoch):
                yield b
                got += 1
                if got == n:
                    return
            epoch += 1
    finally:
        data.train.close()


def main(find: Callable[[LRFindConfig], LRFindResult], argv: list[str] | None, prog: str, framework: str) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from flax_cnn.data.errors import DataError
    from flax_cnn.runtime.faults import FileError

    lcfg = tyro.cli(LRFindConfig, args=argv, prog=prog)
    try:
        validate(lcfg.train)
        if not 0 < lcfg.start_lr < lcfg.end_lr:
            raise ConfigError(f"--start-lr/--end-lr: need 0 < start < end, got {lcfg.start_lr}, {lcfg.end_lr}")
        if lcfg.num_iter < 2:
            raise ConfigError(f"--num-iter: must be >= 2, got {lcfg.num_iter}")
        result = find(lcfg)
    except (ConfigError, DataError, FileError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    plot(result, Path(lcfg.plot), f"LR range test ({framework}, batch {lcfg.train.batch_size})")
    if lcfg.json:
        Path(lcfg.json).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    s = f"{result.suggested_lr:.3g}" if result.suggested_lr is not None else "none (too few points)"
    print(f"{len(result.losses)} steps{' (stopped: loss diverged)' if result.diverged else ''}; "
          f"suggested LR (steepest descent): {s}; plot: {lcfg.plot}")
    return 0
