"""Each known parity trap, injected on purpose: the suite must fail, in the right family, naming
the right layer. Injection is through the suite's own inputs (the Flax model, the key map, the
schedule function) or a monkeypatched `flax_cnn.model.ops`, never by editing the twins."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import optax
import pytest
from jax import lax

from flax_cnn.model import ops
from flax_cnn.training import schedules
from flax_cnn.training.config import TrainConfig
from flax_cnn.model.weights import KeyMapping
from parity.suite import SuiteInputs, SuiteOptions, compiled, default_cases, project_twins, run_suite
from parity.suite.data import random_batches
from tests.conftest import TINY


@pytest.fixture(autouse=True)
def fresh_compilations():
    """The suite reuses compilations across checks; a patched kernel must be traced anew, and must not
    leak into the next test."""
    compiled.clear()
    yield
    compiled.clear()


@pytest.fixture(scope="module")
def inputs():
    return SuiteInputs(random_batches(3, 4, seed=0), TrainConfig())


def _run(inputs, families, *, flax_cfg=None, key_map=None, schedule_fn=schedules.tables):
    pair = project_twins(TINY, seed=0, flax_cfg=flax_cfg)
    if key_map is not None:
        pair.key_map = key_map
    return run_suite(pair, inputs, SuiteOptions(families=families, schedule_cases=default_cases(small=True)[:2]),
                     schedule_fn=schedule_fn)


def test_same_padding_on_the_stride2_conv_is_the_first_diverging_layer(inputs, monkeypatch):
    real = ops.conv2d

    def xla_same_when_strided(x, w, *, stride=1, dilation=1, padding=0, groups=1):
        if stride == 2:  # the trap: 'SAME' pads (0, 1) on an even map, torch pads (1, 1)
            return lax.conv_general_dilated(x, w.astype(x.dtype), (2, 2), "SAME", rhs_dilation=(dilation, dilation),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)
        return real(x, w, stride=stride, dilation=dilation, padding=padding, groups=groups)

    monkeypatch.setattr(ops, "conv2d", xla_same_when_strided)
    report = _run(inputs, ("forward", "layers"))
    assert report.failed_families() == ["forward", "layers"]
    for check in report.family("layers"):
        assert check.details["first_diverging"] == "features.c1.1.conv"
        assert "features.c1.1.conv (features/c1/layers/1/conv)" in check.where
        before = [r for r in check.details["layers"]][:3]  # c1.0: conv, bn, unit
        assert all(r["error"] < 1e-5 for r in before)
        assert check.error > 1e-2  # a shifted window, not rounding


class _TransposedKernel(KeyMapping):
    """The trap: OIHW → (3, 2, 1, 0) = (W, H, I, O) instead of HWIO; same shape for a square kernel."""

    def to_flax(self, a):
        return np.transpose(a, (3, 2, 1, 0)).copy()


def test_missing_kernel_transpose_is_named_at_its_layer(inputs):
    from flax_cnn.model.weights import key_map

    target = "features.c2.1.conv.weight"  # the dilated 3x3 conv, 16 -> 16
    km = [_TransposedKernel(**dataclasses.asdict(m)) if m.torch_key == target else m for m in key_map(TINY)]
    report = _run(inputs, ("forward", "layers"), key_map=km)
    assert report.failed_families() == ["forward", "layers"]
    assert {c.details["first_diverging"] for c in report.family("layers")} == {"features.c2.1.conv"}


@pytest.mark.parametrize("flax_change, first_off, hint", [
    (dict(bn_unbiased_running_var=False), "features.c1.0.bn.running_var", "biased vs unbiased"),
    (dict(bn_momentum=0.9), "features.c1.0.bn.running_mean", "momentum"),  # Flax's convention, not torch's
])
def test_batchnorm_traps_fail_the_batchnorm_family(inputs, flax_change, first_off, hint):
    report = _run(inputs, ("forward", "batchnorm"), flax_cfg=TINY.replace(**flax_change))
    assert report.failed_families() == ["batchnorm"]  # normalisation itself is right: forward passes
    (stats,) = [c for c in report.failures() if "running statistics" in c.name]
    assert stats.where.startswith(f"first buffer off: {first_off} (") and hint in stats.where


def optax_onecycle(cfg: TrainConfig, steps_per_epoch: int):
    """The trap: optax's one-cycle, whose phase boundaries are not torch's."""
    total = cfg.epochs * steps_per_epoch
    f = optax.cosine_onecycle_schedule(total, cfg.max_lr, cfg.pct_start, cfg.div_factor, cfg.final_div_factor)
    return np.asarray(jax.vmap(f)(np.arange(total + 1)), np.float64), np.full(total + 1, cfg.beta1)


def test_optax_onecycle_fails_the_schedule_family(inputs):
    report = _run(inputs, ("schedule",), schedule_fn=optax_onecycle)
    assert report.failed_families() == ["schedule"]
    assert all(c.error > 1e-3 and c.where.startswith("first step off: 1 ") for c in report.family("schedule"))
