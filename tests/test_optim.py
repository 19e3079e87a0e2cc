"""JAX schedules and Adam reproduce torch's (the trainer uses these; the parity suite re-checks them)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from flax_cnn.training import optim, schedules
from flax_cnn.model.config import ConfigError
from flax_cnn.training.config import TrainConfig
from parity.suite.schedule import torch_schedule
from torch_ref.optim import make_optimizer, make_scheduler




@pytest.mark.parametrize("kw", [
    dict(schedule="onecycle"),
    dict(schedule="onecycle", pct_start=0.3, div_factor=25, final_div_factor=1e4, cycle_momentum=True),
    dict(schedule="cosine"),
    dict(schedule="step", step_epochs=2, step_gamma=0.5),
    dict(schedule="constant"),
])
def test_schedule_tables_match_torch_every_step(kw):
    cfg = TrainConfig(epochs=5, max_lr=0.01, **kw)
    lr_t, b1_t = torch_schedule(cfg, 13)
    lr_j, b1_j = schedules.tables(cfg, 13)
    # float64 on both sides, same formulas: equal to the last bit except CosineAnnealingLR's
    # recursive form, which accumulates ~1e-15 relative per step.
    np.testing.assert_allclose(lr_j[:len(lr_t)], lr_t, rtol=1e-12)
    if cfg.cycle_momentum:
        np.testing.assert_allclose(b1_j[:len(b1_t)], b1_t, rtol=1e-12)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_with_weight_decay_matches_torch(decoupled):
    """Coupled L2 (torch Adam) and decoupled (AdamW): 20 steps on a quadratic, rel 1e-5."""
    cfg = TrainConfig(epochs=2, max_lr=0.05, weight_decay=0.1, decoupled_weight_decay=decoupled, cycle_momentum=True)
    rng = np.random.default_rng(0)
    w0, target = rng.standard_normal(7).astype(np.float32), rng.standard_normal(7).astype(np.float32)
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = make_optimizer([p], cfg)
    sch = make_scheduler(opt, cfg, 10)
    lr, b1 = schedules.tables(cfg, 10)
    tx = optim.adam(lr, b1, weight_decay=cfg.weight_decay, decoupled=decoupled)
    w = jnp.asarray(w0)
    state = tx.init(w)
    grad = jax.grad(lambda w: jnp.sum((w - target) ** 2 * jnp.arange(1, 8)))
    for _ in range(20):
        loss = ((p - torch.from_numpy(target)) ** 2 * torch.arange(1, 8)).sum()
        opt.zero_grad(); loss.backward(); opt.step(); sch.step()
        u, state = tx.update(grad(w), state, w)
        w = optax.apply_updates(w, u)
    np.testing.assert_allclose(np.asarray(w), p.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_float32_schedule_would_not_be_exact():
    """Why the tables are float64: a float32 cosine near the final LR is > 1e-6 relative off."""
    cfg = TrainConfig(epochs=40, max_lr=0.005)
    lr64, _ = schedules.tables(cfg, 390)
    total = 40 * 390
    s = np.arange(total - 50, total, dtype=np.float32)
    start = np.float32(0.005 * 0.25 * total) - 1
    pct = (s - start) / (np.float32(total - 1) - start)
    lo = np.float32(0.005 / 10 / 100)
    lr32 = lo + (np.float32(0.005) - lo) / 2 * (np.cos(np.float32(np.pi) * pct) + 1)
    assert np.max(np.abs(lr32 - lr64[total - 50:total]) / lr64[total - 50:total]) > 1e-6


def test_onecycle_with_a_zero_length_warmup_is_a_config_error_not_a_division_by_zero():
    """pct_start × steps = 1 puts torch's phase boundary at step 0 (torch raises ZeroDivisionError there)."""
    with pytest.raises(ConfigError, match="--pct-start"):
        schedules.tables(TrainConfig(epochs=1, pct_start=0.25), steps_per_epoch=4)
    assert schedules.tables(TrainConfig(epochs=1, pct_start=0.25), steps_per_epoch=3)[0].shape == (4,)


@pytest.mark.parametrize("decoupled", [False, True])
def test_no_decay_norm_bias_leaves_one_dimensional_parameters_undecayed_in_both_twins(decoupled):
    """--no-decay-norm-bias: a kernel (ndim 2) decays, a bias-like vector (ndim 1) the loss ignores
    stays bit-exact in both twins; the kernels agree to rel 1e-5 after 20 steps (LR 0.01 keeps them
    far from the optimum, where Adam divides float32 rounding of a vanishing gradient by itself)."""
    cfg = TrainConfig(epochs=2, max_lr=0.01, weight_decay=0.1, decoupled_weight_decay=decoupled, decay_norm_bias=False)
    rng = np.random.default_rng(1)
    k0, b0, target = (rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (4,), (3, 4)))
    tk, tb = (torch.nn.Parameter(torch.from_numpy(a.copy())) for a in (k0, b0))
    opt = make_optimizer([tk, tb], cfg)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    sch = make_scheduler(opt, cfg, 10)
    lr, _ = schedules.tables(cfg, 10)
    tx = optim.adam(lr, weight_decay=cfg.weight_decay, decoupled=decoupled, decay_norm_bias=False)
    params = {"kernel": jnp.asarray(k0), "bias": jnp.asarray(b0)}
    state = tx.init(params)
    grad = jax.grad(lambda p: jnp.sum((p["kernel"] - target) ** 2))
    for _ in range(20):
        loss = ((tk - torch.from_numpy(target)) ** 2).sum() + 0.0 * tb.sum()
        opt.zero_grad(); loss.backward(); opt.step(); sch.step()
        u, state = tx.update(grad(params), state, params)
        params = optax.apply_updates(params, u)
    np.testing.assert_array_equal(tb.detach().numpy(), b0)
    np.testing.assert_array_equal(np.asarray(params["bias"]), b0)
    np.testing.assert_allclose(np.asarray(params["kernel"]), tk.detach().numpy(), rtol=1e-5, atol=1e-6)
    decayed = optim.adam(lr, weight_decay=cfg.weight_decay, decoupled=decoupled)  # the default decays the bias
    u, _ = decayed.update(jax.tree.map(jnp.zeros_like, params), decayed.init(params), params)
    assert float(jnp.max(jnp.abs(u["bias"]))) > 0


def test_no_decay_norm_bias_masks_the_default_model_by_the_same_rule_as_the_torch_twin():
    """The mask over the Flax model's nnx.State spares exactly the parameters torch's second group holds:
    as many, of the same sizes (BatchNorm scales/shifts, Dense bias)."""
    from flax_cnn.model.cnn import build_model
    from flax_cnn.training.step import Model
    from torch_ref.model import build_model as build_torch_model

    cfg = TrainConfig(decay_norm_bias=False)
    params = Model.split(build_model(cfg.model_config(), seed=0)).params
    spared = sorted(int(p.size) for p, d in zip(jax.tree.leaves(params), jax.tree.leaves(optim.decays(params))) if not d)
    groups = make_optimizer(build_torch_model(cfg.model_config()).parameters(), cfg).param_groups
    assert spared == sorted(p.numel() for p in groups[1]["params"])
    assert len(spared) == 2 * 12 + 1  # 12 BatchNorms (scale, shift) and the Dense bias; convs have no bias
