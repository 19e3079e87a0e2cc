"""The whole suite on a 4-layer pair: every family runs, passes, and measures what it says."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flax_cnn.training.config import TrainConfig
from parity.suite import FAMILIES, SuiteInputs, SuiteOptions, default_cases, project_twins, run_suite
from parity.suite.data import random_batches
from parity.suite.report import format_table, plot_curves, write_json
from tests.conftest import TINY

STEPS = 5  # trajectory steps: the fewest one-cycle allows at pct_start 0.25 (0.25 * 5 - 1 > 0)


@pytest.fixture(scope="session")
def report():
    pair = project_twins(TINY, seed=0)
    dropout_pair = project_twins(TINY.replace(dropout=0.3), seed=0)
    x_test, y_test = random_batches(1, 64, seed=1)[0]
    inputs = SuiteInputs(random_batches(STEPS, 4, seed=0), TrainConfig(max_lr=0.01), (x_test, y_test),
                         "random weights")
    options = SuiteOptions(float64=True, schedule_cases=default_cases(small=True)[:2], eval_batch_size=32)
    return run_suite(pair, inputs, options, dropout_pair=dropout_pair)


def _errors(report, family, dtype=None):
    return [c.error for c in report.family(family) if dtype is None or f"[{dtype}]" in c.name]


def test_every_family_runs_and_passes(report):
    assert report.passed, format_table(report)
    assert [f for f in FAMILIES if report.family(f)] == list(FAMILIES)


def test_float32_residue_is_rounding(report):
    """float32 errors are small but real (XLA and ATen sum differently); float64 shrinks them by
    at least 1e6, as rounding must — a model difference would not shrink."""
    for family in ("forward", "layers", "gradient"):
        f32, f64 = max(_errors(report, family, "float32")), max(_errors(report, family, "float64"))
        assert 1e-9 < f32 <= 1e-5, family
        assert f64 <= 1e-12 and f64 < f32 * 1e-6, family


def test_forward_covers_eval_train_and_same_dropout_masks(report):
    names = [c.name for c in report.family("forward") if "[float32]" in c.name]
    assert any("eval" in n for n in names) and any("dropout off" in n for n in names)
    (masked,) = [c for c in report.family("forward") if "same dropout masks" in c.name and "float32" in c.name]
    assert masked.details["dropout_sites"] == len(TINY.layers()) and masked.details["rates"] == [0.3]


def test_layers_compare_every_conv_bn_unit_and_the_head_in_order(report):
    check = report.family("layers")[0]
    names = [r["layer"] for r in check.details["layers"]]
    assert names[:3] == ["features.c1.0.conv", "features.c1.0.bn", "features.c1.0"]
    assert "features.c2.0.conv.depthwise" in names and names[-1] == "fc"
    assert len(names) == 14 and check.details["first_diverging"] is None


def test_gradient_covers_every_parameter(report):
    n_params = len(list(project_twins(TINY).torch_model.named_parameters()))
    grads = [c for c in report.family("gradient") if c.details.get("tensors")]
    assert all(len(c.details["tensors"]) == n_params for c in grads)
    loss = report.family("gradient")[0]
    assert 1.0 < loss.details["torch"] < 5.0  # ~ln(10) with label smoothing: a real loss was compared


def test_float32_gradients_are_judged_against_torchs_exact_gradient(report):
    """The reference is torch in float64; the float32-vs-float32 difference is kept beside it, and
    is bounded by the port's error plus torch's own float32 error (triangle inequality; the 1 %
    covers the two errors' scales, max|g| in float32 vs in float64)."""
    (grads,) = [c for c in report.family("gradient") if c.details.get("tensors") and "[float32]" in c.name]
    assert grads.details["reference"] == "torch float64"
    for r in grads.details["tensors"]:
        assert r["jax_vs_torch_f32"] <= 1.01 * (r["error"] + r["torch_error"]) + 1e-12, r["tensor"]
        assert r["torch_error"] < 1e-5, r["tensor"]  # a kink-free batch: torch's rounding is small too


def test_batchnorm_compares_every_running_buffer_and_counter(report):
    stats, counters, *stats64 = report.family("batchnorm")
    assert len(stats.details["buffers"]) == 2 * len(TINY.layers())
    assert all(len(s.details["buffers"]) == 2 * len(TINY.layers()) and "[float64]" in s.name for s in stats64)
    assert all(r["torch"] == r["jax"] == 3 for r in counters.details["buffers"])  # bn_steps=3 forward passes


def test_trajectory_records_both_loss_curves(report):
    c = report.curves
    assert len(c["loss_torch"]) == len(c["loss_jax"]) == len(c["param_rel_err"]) == STEPS
    # float64 throughout (the trainer's step, fed float64): only rounding separates the twins.
    np.testing.assert_allclose(c["loss_jax"], c["loss_torch"], rtol=1e-12)
    assert max(c["param_rel_err"]) < 1e-10
    assert c["lr_torch"][0] == pytest.approx(0.01 / TrainConfig().div_factor)  # one-cycle starts at max/div


def test_accuracy_is_measured_on_the_given_images(report):
    acc = report.family("accuracy")[0]
    assert acc.details["images"] == 64 and acc.details["disagreements"] == 0


def test_json_has_every_check_and_the_curves(report, tmp_path):
    write_json(report, tmp_path / "r.json")
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["passed"] is True and len(d["checks"]) == len(report.checks)
    assert {c["family"] for c in d["checks"]} == set(FAMILIES)
    assert all({"error", "tol", "passed", "where"} <= set(c) for c in d["checks"])
    assert len(d["curves"]["loss_jax"]) == STEPS
    assert plot_curves(report, tmp_path / "r.png") and (tmp_path / "r.png").stat().st_size > 10_000


def test_table_lists_every_check_with_its_numbers(report):
    table = format_table(report)
    header, rule, *rows = table.split("\n\n")[0].splitlines()
    assert header.split()[:6] == ["family", "check", "error", "torch_own", "allowed", "result"]
    assert len(rows) == len(report.checks)
    for row, check in zip(rows, report.checks):
        assert row.split()[0] == check.family and " pass" in row
        assert (f"{check.error:.2e}" if check.error else "  0  ") in row
    assert table.splitlines()[-1] == f"PASS: {len(rows)} of {len(rows)} checks pass"
