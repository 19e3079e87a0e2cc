"""Family "trajectory": N optimizer steps in both twins from the same weights on the same batches,
each through the code path its trainer uses — `flax_cnn.training.step.make_train_step` with
`flax_cnn.training.optim.from_config` and `flax_cnn.training.schedules` on the JAX side, `torch_ref.optim` with the torch
engine's plain loop on the other — comparing the loss at every step and the weights at the end.

Needs a deterministic pair (dropout 0): the twins draw dropout masks from different RNGs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from flax_cnn.training import optim, schedules
from flax_cnn.training.step import Model, init_state, make_train_step, zero_metrics
from flax_cnn.training.config import TrainConfig
from parity.suite import tolerances
from parity.suite.results import Check, rel_err
from parity.suite.schedule import ScheduleFn
from parity.suite.twins import KeyMappingLike, flax_input, precision, prepare, state_tensors, torch_input
from torch_ref.optim import make_optimizer, make_scheduler

FAMILY = "trajectory"
Batch = tuple[np.ndarray, np.ndarray]  # (images NCHW float32, int labels)


@dataclass
class Trajectory:
    """Per-step losses and weight divergence, and both twins' final tensors (torch naming)."""

    loss_torch: list[float] = field(default_factory=list)
    loss_jax: list[float] = field(default_factory=list)
    param_err: list[float] = field(default_factory=list)
    lr_torch: list[float] = field(default_factory=list)
    params_torch: dict[str, np.ndarray] = field(default_factory=dict)
    params_jax: dict[str, np.ndarray] = field(default_factory=dict)
    buffers_torch: dict[str, np.ndarray] = field(default_factory=dict)
    buffers_jax: dict[str, np.ndarray] = field(default_factory=dict)

    def curves(self) -> dict[str, list[float]]:
        return {"step": list(range(len(self.loss_torch))), "loss_torch": self.loss_torch, "loss_jax": self.loss_jax,
                "param_rel_err": self.param_err, "lr_torch": self.lr_torch}


def run_trajectory(torch_model, flax_model, key_map: Sequence[KeyMappingLike], batches: Sequence[Batch],
                   train_cfg: TrainConfig, *, schedule_fn: ScheduleFn = schedules.tables,
                   dtype: str = "float64") -> Trajectory:
    """len(batches) steps of `train_cfg`'s optimizer, its schedule spanning exactly those steps."""
    with precision(dtype):
        return _run(torch_model, flax_model, key_map, batches, train_cfg, schedule_fn, dtype)


def _run(torch_model, flax_model, key_map, batches, train_cfg, schedule_fn, dtype) -> Trajectory:
    cfg = train_cfg.replace(epochs=1)
    n_steps = len(batches)
    if cfg.schedule == "onecycle" and cfg.pct_start * n_steps <= 1:
        raise ValueError(f"one-cycle over {n_steps} steps needs pct_start * steps > 1 (torch's OneCycleLR divides "
                         f"by pct_start * steps - 1); pct_start is {cfg.pct_start:g}: use more steps")
    tm, fm = prepare(torch_model, flax_model, key_map, dtype)
    tm.train()
    opt = make_optimizer(tm.parameters(), cfg)
    sched = make_scheduler(opt, cfg, n_steps)

    model = Model.split(fm)
    lr_table, b1_table = schedule_fn(cfg, n_steps)
    tx = optim.from_config(cfg, lr_table, b1_table)
    state = init_state(model, tx)
    step = make_train_step(model, tx, label_smoothing=cfg.label_smoothing, compute_dtype=jnp.dtype(dtype))
    key = jax.random.key_data(jax.random.key(cfg.seed))
    param_keys = {k for k, _ in tm.named_parameters()}
    traj = Trajectory()
    for x, y in tqdm(batches, desc=f"trajectory [{dtype}]", unit="step", leave=False, disable=None):
        traj.lr_torch.append(float(opt.param_groups[0]["lr"]))
        loss = F.cross_entropy(tm(torch_input(x, dtype)), torch.from_numpy(y.astype(np.int64)),
                               label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        traj.loss_torch.append(float(loss.detach()))

        state.metrics = zero_metrics()  # per-step loss, not a float32 running sum
        state = step(state, flax_input(x, dtype), jnp.asarray(y, jnp.int32), key)
        traj.loss_jax.append(float(state.metrics["loss_sum"]) / len(y))

        ours = state_tensors(state.params, key_map)
        ref = {k: v.detach().numpy() for k, v in tm.named_parameters()}
        traj.param_err.append(max(rel_err(ours[k], ref[k]) for k in param_keys))
    traj.params_jax = state_tensors(state.params, key_map)
    traj.params_torch = {k: v.detach().numpy().copy() for k, v in tm.named_parameters()}
    traj.buffers_torch = {k: v.numpy().copy() for k, v in tm.state_dict().items()
                          if k not in param_keys and v.is_floating_point()}
    traj.buffers_jax = {k: v for k, v in state_tensors(state.batch_stats, key_map).items() if k in traj.buffers_torch}
    return traj


def trajectory_checks(torch_model, flax_model, key_map: Sequence[KeyMappingLike], batches: Sequence[Batch],
                      train_cfg: TrainConfig, *, schedule_fn: ScheduleFn = schedules.tables,
                      dtype: str = "float64", tol: float = tolerances.TRAJECTORY) -> tuple[list[Check], Trajectory]:
    """Weights at the end, the loss at every step, BN statistics at the end; plus the curves."""
    t = run_trajectory(torch_model, flax_model, key_map, batches, train_cfg, schedule_fn=schedule_fn, dtype=dtype)
    n = len(batches)
    what = (f"{n} steps: Adam{'W' if train_cfg.decoupled_weight_decay else ''} lr {train_cfg.max_lr:g} "
            f"{train_cfg.schedule}, wd {train_cfg.weight_decay:g}, smoothing {train_cfg.label_smoothing:g} [{dtype}]")

    def first_step_over(errors: list[float]) -> int | None:
        return next((i for i, e in enumerate(errors) if not e <= tol), None)

    params = {k: rel_err(t.params_jax.get(k, np.full(1, np.nan)), v) for k, v in t.params_torch.items()}
    worst = max(params, key=params.get)
    s = first_step_over(t.param_err)
    where = f"weights first off at step {s}; worst tensor {worst}" if s is not None else f"worst: {worst}"
    loss_errs = [abs(j - r) / abs(r) for j, r in zip(t.loss_jax, t.loss_torch)]
    s_loss = first_step_over(loss_errs)
    out = [
        Check(FAMILY, f"parameters after {what}", params[worst], tol, where, {"tensors": params}),
        Check(FAMILY, f"loss at each of {n} steps [{dtype}]", max(loss_errs), tol,
              "" if s_loss is None else f"first step off: {s_loss} (jax {t.loss_jax[s_loss]:.7g}, "
                                        f"torch {t.loss_torch[s_loss]:.7g})",
              {"final_loss_torch": t.loss_torch[-1], "final_loss_jax": t.loss_jax[-1]}),
    ]
    if t.buffers_torch:
        bufs = {k: rel_err(t.buffers_jax.get(k, np.full(1, np.nan)), v) for k, v in t.buffers_torch.items()}
        wb = max(bufs, key=bufs.get)
        out.append(Check(FAMILY, f"BN running statistics after {n} steps [{dtype}]", bufs[wb], tol,
                         f"worst: {wb}" if bufs[wb] <= tol else f"first buffer off: "
                         f"{next(k for k, e in bufs.items() if not e <= tol)}", {"buffers": bufs}))
    return out, t
