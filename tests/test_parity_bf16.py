"""Family "bf16": the twins' bf16 steps pass against the exact one, and known wrong models fail it."""

from __future__ import annotations

import numpy as np
import pytest
from jax import lax

from flax_cnn.model import layers, ops
from flax_cnn.model.batch_norm import batch_norm_train
from flax_cnn.model.config import SEED_BLOCKS, ModelConfig
from flax_cnn.training.config import TrainConfig
from parity.suite import SuiteInputs, SuiteOptions, project_twins, run_suite
from parity.suite import tolerances
from parity.suite.bf16 import bf16_checks, flax_bf16_outcome, normwise_error, torch_outcome
from parity.suite.data import random_batches
from tests.conftest import TINY

U = tolerances.BF16_U


def _checks(pair, batch):
    x, y = batch
    return {c.name.split(":")[0] + (" grad" if "d loss" in c.name else " loss" if "loss" in c.name else " logits"): c
            for c in bf16_checks(pair.torch_model, pair.flax_model, pair.key_map, x, y, label_smoothing=0.1)}


@pytest.fixture(scope="module")
def batch():
    return random_batches(1, 8, seed=0)[0]


def test_the_twins_pass_with_real_bf16_rounding(batch):
    checks = _checks(project_twins(TINY, seed=0), batch)
    assert len(checks) == 5 and all(c.passed for c in checks.values()), [c.where for c in checks.values()]
    for twin in ("Flax twin", "torch twin (reference)"):
        assert 0.1 * U < checks[f"{twin} logits"].error < tolerances.BF16_FORWARD  # rounded, not float32
    grad = checks["Flax twin grad"]
    assert 1 * U < grad.details["flax_normwise"] < 64 * U and 1 * U < grad.details["torch_normwise"] < 64 * U


def test_same_padding_on_the_stride2_conv_fails_the_flax_twin_only(batch, monkeypatch):
    real = ops.conv2d

    def xla_same_when_strided(x, w, *, stride=1, dilation=1, padding=0, groups=1):
        if stride == 2:
            return lax.conv_general_dilated(x, w.astype(x.dtype), (2, 2), "SAME", rhs_dilation=(dilation, dilation),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)
        return real(x, w, stride=stride, dilation=dilation, padding=padding, groups=groups)

    monkeypatch.setattr(ops, "conv2d", xla_same_when_strided)
    checks = _checks(project_twins(TINY, seed=0), batch)
    assert not checks["Flax twin logits"].passed and not checks["Flax twin grad"].passed
    assert checks["Flax twin grad"].error > 4 * checks["Flax twin grad"].tol
    assert checks["torch twin (reference) logits"].passed and checks["torch twin (reference) loss"].passed


def _bn_in_bf16(self, x):
    """The bf16 trap: BatchNorm's statistics and normalisation in the activations' bf16, not float32."""
    y, _, _ = batch_norm_train(x, self.scale.get_value().astype(x.dtype), self.bias.get_value().astype(x.dtype),
                               self.eps)
    return y.astype(x.dtype)


def _bf16_gradient_errors(cfg, batch, monkeypatch):
    """Norm-wise bf16 gradient error off exact: torch's, the Flax twin's, and Flax's with BatchNorm in bf16."""
    pair = project_twins(cfg, seed=0)
    args = (pair.torch_model, pair.flax_model, pair.key_map, *batch)
    kw = dict(label_smoothing=0.1, dropout_pairs=pair.dropout_pairs)
    exact = torch_outcome(*args, compute="float64", **kw)
    ref = normwise_error(torch_outcome(*args, compute="bf16", **kw).grads, exact.grads)
    ours = normwise_error(flax_bf16_outcome(*args, **kw).grads, exact.grads)
    with monkeypatch.context() as m:
        m.setattr(layers.BatchNorm2d, "__call__", _bn_in_bf16)
        wrong = normwise_error(flax_bf16_outcome(*args, **kw).grads, exact.grads)
    return ref, ours, wrong


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [  # measured (u): torch / Flax / BatchNorm in bf16
    pytest.param(ModelConfig(), id="default"),                                          # 79.5 / 73.6 / 93.3
    pytest.param(ModelConfig(blocks=SEED_BLOCKS, activation="relu"), id="seed-relu"),  # 91.4 / 78.3 / 105.8
    pytest.param(TINY, id="4-layer"),                                                  # 10.7 / 11.0 / 14.2
])
def test_the_gradient_check_passes_the_twin_and_fails_batchnorm_in_bf16(cfg, batch, monkeypatch):
    ref, ours, wrong = _bf16_gradient_errors(cfg, batch, monkeypatch)
    assert ours - ref <= tolerances.bf16_gradient_excess(ref) < wrong - ref


def test_the_runner_runs_the_family_and_the_report_names_it():
    pair = project_twins(TINY, seed=0)
    report = run_suite(pair, SuiteInputs(random_batches(1, 4, seed=0), TrainConfig()), SuiteOptions(families=("bf16",)))
    assert report.passed and [c.family for c in report.checks] == ["bf16"] * 5
    assert all(np.isfinite(c.error) for c in report.checks)
