"""Family "schedule": the LR (and cycled beta1) the JAX optimizer reads at every step vs torch's
scheduler driving a real `torch.optim.Adam`.

Parity trap: torch's OneCycleLR ends phase one at step `pct_start*total - 1` and anneals to
`total - 1`; optax's `cosine_onecycle_schedule` places both elsewhere (`flax_cnn.training.schedules`
follows torch). The JAX side is read through `flax_cnn.training.optim.table_schedule`, the float32
lookup the jitted step performs, so the check covers the table *and* how it is consumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np
import torch

from flax_cnn.training import optim, schedules
from flax_cnn.training.config import TrainConfig
from parity.suite import tolerances
from parity.suite.results import Check, elementwise_rel_err
from torch_ref.optim import make_optimizer, make_scheduler

FAMILY = "schedule"
ScheduleFn = Callable[[TrainConfig, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ScheduleCase:
    """A TrainConfig's schedule over `cfg.epochs * steps_per_epoch` steps."""

    name: str
    cfg: TrainConfig
    steps_per_epoch: int

    @property
    def total_steps(self) -> int:
        return self.cfg.epochs * self.steps_per_epoch


def default_cases(small: bool = False) -> tuple[ScheduleCase, ...]:
    """The trainer's own schedule, torch's OneCycleLR defaults (cycling beta1), odd sizes, cosine, step."""
    onecycle = [
        ScheduleCase("onecycle, torch defaults (pct 0.3, div 25, final 1e4), cycled beta1",
                     TrainConfig(epochs=4, max_lr=0.01, pct_start=0.3, div_factor=25, final_div_factor=1e4,
                                 cycle_momentum=True), 250),
        ScheduleCase("onecycle, 7 steps (pct 0.5, div 5, final 10)",
                     TrainConfig(epochs=1, max_lr=0.1, pct_start=0.5, div_factor=5, final_div_factor=10), 7),
        ScheduleCase("onecycle, 777 steps (pct 0.1, div 100, final 1e3)",
                     TrainConfig(epochs=3, max_lr=0.003, pct_start=0.1, div_factor=100, final_div_factor=1e3), 259),
        ScheduleCase("cosine, 500 steps", TrainConfig(epochs=5, max_lr=0.01, schedule="cosine"), 100),
        ScheduleCase("step, gamma 0.5 every 2 epochs",
                     TrainConfig(epochs=5, max_lr=0.01, schedule="step", step_epochs=2, step_gamma=0.5), 13),
    ]
    if small:
        return tuple(onecycle)
    trainer = TrainConfig()
    return (ScheduleCase(f"onecycle, trainer default ({trainer.epochs} epochs x 390 steps, pct "
                         f"{trainer.pct_start:g}, div {trainer.div_factor:g}, final {trainer.final_div_factor:g})",
                         trainer, 390),) + tuple(onecycle)


def torch_schedule(cfg: TrainConfig, steps_per_epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(lr, beta1) torch's optimizer uses at each step 0 … total-1, from `torch_ref.optim`."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = make_optimizer([p], cfg)
    sched = make_scheduler(opt, cfg, steps_per_epoch)
    lrs, b1s = [], []
    for _ in range(cfg.epochs * steps_per_epoch):
        lrs.append(opt.param_groups[0]["lr"])
        b1s.append(opt.param_groups[0]["betas"][0])
        opt.step()  # no gradient: a no-op update, but the scheduler expects it before its step
        if sched is not None:
            sched.step()
    return np.array(lrs), np.array(b1s)


def jax_schedule(cfg: TrainConfig, steps_per_epoch: int, schedule_fn: ScheduleFn = schedules.tables
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lr as the optimizer reads it, beta1 as read, the float64 lr table) for steps 0 … total-1."""
    lr_table, b1_table = schedule_fn(cfg, steps_per_epoch)
    steps = jnp.arange(cfg.epochs * steps_per_epoch)
    read = lambda table: np.asarray(optim.table_schedule(np.asarray(table))(steps), np.float64)  # noqa: E731
    return read(lr_table), read(b1_table), np.asarray(lr_table, np.float64)[:len(steps)]


def schedule_check(case: ScheduleCase, schedule_fn: ScheduleFn = schedules.tables,
                   tol: float = tolerances.SCHEDULE) -> Check:
    """Per-step relative error of the LR (and beta1 if cycled); `where` is the first step off."""
    lr_t, b1_t = torch_schedule(case.cfg, case.steps_per_epoch)
    lr_j, b1_j, lr64 = jax_schedule(case.cfg, case.steps_per_epoch, schedule_fn)
    curves = [("lr", lr_j, lr_t)] + ([("beta1", b1_j, b1_t)] if case.cfg.cycle_momentum else [])
    errors = {what: elementwise_rel_err(j, t) for what, j, t in curves}
    err = max(errors.values())
    where = ""
    for what, j, t in curves:
        if errors[what] > tol:
            rel = np.abs(j - t) / np.abs(t) if j.shape == t.shape else np.full(len(t), np.inf)
            s = int(np.argmax(~(rel <= tol)))
            jv = f"{j[s]:.9g}" if s < len(j) else "missing"
            where = f"first step off: {s} of {len(t)} ({what} jax {jv}, torch {t[s]:.9g})"
            break
    return Check(FAMILY, case.name, err, tol, where,
                 {"steps": case.total_steps, "errors": errors, "float64_table_error": elementwise_rel_err(lr64, lr_t)})


def schedule_checks(cases: Sequence[ScheduleCase] | None = None, schedule_fn: ScheduleFn = schedules.tables,
                    tol: float = tolerances.SCHEDULE) -> list[Check]:
    return [schedule_check(c, schedule_fn, tol) for c in (default_cases() if cases is None else cases)]
