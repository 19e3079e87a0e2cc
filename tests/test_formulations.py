"""The whole model under each conv formulation (`flax_cnn.model.ops.FORMULATIONS`), forced on this backend.

The trainer's jitted train step and the train-mode forward, in float64: "cpu_tuned" and "xla" must
give the same logits, loss, every gradient and BatchNorm statistic to 1e-12 (summation order alone
is ~1e-15), and the parity suite's float64 verdicts must pass under both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flax_cnn.model import ops
from flax_cnn.model.cnn import build_model
from flax_cnn.training.step import Model, init_state, make_train_step
from flax_cnn.training.config import TrainConfig
from parity.suite import SuiteInputs, SuiteOptions, project_twins, run_suite
from parity.suite.data import random_batches
from parity.suite.results import rel_err
from tests.conftest import TINY

TOL = 1e-12  # float64: rounding is ~1e-16 per operation; a wrong formulation is off by O(1)


def _keep_gradient() -> optax.GradientTransformation:
    """An 'optimizer' that stores the gradient as its state and changes nothing: the step's gradient, read back."""
    return optax.GradientTransformation(lambda p: jax.tree.map(jnp.zeros_like, p),
                                        lambda g, s, p=None: (jax.tree.map(jnp.zeros_like, g), g))


def _f64(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


@pytest.fixture(scope="module")
def outcomes():
    """(train-mode logits, state after one step) of each formulation, same weights and batch."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 32, 32, 3))
    y = np.arange(4, dtype=np.int32) % 10
    out = {}
    with jax.enable_x64(True):
        model = Model.split(build_model(TINY, seed=0))
        model = Model(model.train_def, model.eval_def, _f64(model.params), _f64(model.batch_stats))
        key = jax.random.key_data(jax.random.key(0))
        for form in ops.FORMULATIONS:
            with ops.formulation(form):
                step = make_train_step(model, _keep_gradient(), label_smoothing=0.1, compute_dtype=jnp.float64)
                forward = jax.jit(lambda p, s, x: model.merge(p, s, train=True)(x))
            # both traced outside the context: `make_train_step` pins its formulation, the forward is traced here
            with ops.formulation(form):
                logits = np.asarray(forward(model.params, model.batch_stats, jnp.asarray(x)))
            fresh = jax.tree.map(jnp.copy, init_state(model, _keep_gradient()))  # the step donates its state
            state = step(fresh, jnp.asarray(x), jnp.asarray(y), key)
            out[form] = logits, jax.tree.map(np.asarray, state)
    return out


def test_logits_agree(outcomes):
    (a, _), (b, _) = outcomes["cpu_tuned"], outcomes["xla"]
    assert a.dtype == np.float64 and rel_err(a, b) <= TOL


def test_train_step_gradients_loss_and_batch_stats_agree(outcomes):
    (_, a), (_, b) = outcomes["cpu_tuned"], outcomes["xla"]
    grads_a, grads_b = jax.tree.leaves(a.opt_state), jax.tree.leaves(b.opt_state)
    assert len(grads_a) == len(jax.tree.leaves(a.params)) and all(g.dtype == np.float64 for g in grads_a)
    assert max(rel_err(u, v) for u, v in zip(grads_a, grads_b)) <= TOL
    assert max(float(np.max(np.abs(g))) for g in grads_a) > 1e-3  # real gradients, not zeros
    assert rel_err(a.metrics["loss_sum"], b.metrics["loss_sum"]) <= TOL
    for u, v in zip(jax.tree.leaves(a.batch_stats), jax.tree.leaves(b.batch_stats)):
        assert rel_err(u, v) <= TOL


def test_the_formulations_are_different_programs():
    """The test above compares two kernels, not one twice: only "cpu_tuned" has the opaque identity on CPU."""
    model = Model.split(build_model(TINY, seed=0))
    x, y = jnp.zeros((2, 32, 32, 3)), jnp.zeros((2,), jnp.int32)
    key = jax.random.key_data(jax.random.key(0))
    hlo = {}
    for form in ops.FORMULATIONS:
        with ops.formulation(form):
            step = make_train_step(model, optax.sgd(0.1))
        hlo[form] = step.lower(init_state(model, optax.sgd(0.1)), x, y, key).as_text()
    assert "feature_group_count = 16" in hlo["xla"] and "feature_group_count = 16" not in hlo["cpu_tuned"]


@pytest.mark.parametrize("form", list(ops.FORMULATIONS))
def test_parity_suite_passes_under_each_formulation(form):
    pair = project_twins(TINY, seed=0)
    inputs = SuiteInputs(random_batches(3, 4, seed=0), TrainConfig())
    with ops.formulation(form):
        report = run_suite(pair, inputs, SuiteOptions(families=("forward", "gradient"), float64=True))
    assert report.passed and len(report.checks) >= 6
    assert all(c.error <= 1e-12 for c in report.checks if "[float64]" in c.name)
