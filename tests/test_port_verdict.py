"""`parity.port --check` is right both ways: wrong ports FAIL in float32, naming the place, at the
ill-conditioned batch 2 as at batch 8, while the same models ported exactly PASS (tests/test_port_zoo.py).

Each mutation changes one thing in a correct port, the way a porter's bug would: a kernel written
without its transpose in one layer, one BatchNorm's eps, the running-variance update (an edit of
the emitted model.py: the module under check is rebuilt from the edited file), a ReLU6 ported as
ReLU. The float32 verdict is the one under test (float64 would catch them trivially).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
import torch

from flax_cnn.model.weights import KeyMapping
from parity.port import port
from parity.port import layers as pl
from parity.port.check import run_checks
from parity.suite import compiled
from tests.port_helpers import mutated
from tests.zoo import ZOO

SHAPE = (2, 3, 32, 32)


@pytest.fixture(autouse=True)
def fresh_compilations():
    """A mutated port has the graph of a correct one: it must be traced anew, and not leak."""
    compiled.clear()
    yield
    compiled.clear()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ported(name: str):
    torch.manual_seed(0)
    model = ZOO[name]()
    return model, port(model, torch.randn(*SHAPE))


class _TransposedKernel(KeyMapping):
    """The bug: OIHW → (3, 2, 1, 0) = (W, H, I, O) instead of HWIO; same shape for a square kernel."""

    def to_flax(self, a):
        return np.transpose(a, (3, 2, 1, 0)).copy()


def _only_failures_name(report, family: str) -> list:
    fails = report.failures()
    assert fails, "the wrong port passed"
    assert {c.family for c in fails} >= {family}
    assert all("[float32]" in c.name or "counters" in c.name for c in fails if c.family == family) or any(
        "[float32]" in c.name for c in fails)
    return [c for c in fails if c.family == family and "[float32]" in c.name]


@pytest.mark.parametrize("batch", [2, 8])
def test_a_kernel_without_its_transpose_fails_at_its_layer(batch):
    model, result = ported("vgg11")
    target = "features.2.3.weight"  # the second conv of the third stage
    assert any(m.torch_key == target for m in result.key_map)
    bad = [_TransposedKernel(**dataclasses.asdict(m)) if m.torch_key == target else m for m in result.key_map]
    result = dataclasses.replace(result, key_map=tuple(bad))
    report = run_checks(model, result, (batch, 3, 32, 32), families=("forward", "layers"))
    layers = _only_failures_name(report, "layers")
    assert layers and all(c.details["first_diverging"] == "features.2.3" for c in layers)
    assert all(c.error > 1e3 * c.details["torch_error"] for c in layers)  # materially worse, not rounding


@pytest.mark.parametrize("batch", [2, 8])
def test_batchnorm_eps_1e3_in_one_layer_fails_at_that_layer(batch):
    model, result = ported("resnet18")
    pl.child(result.module, "stage2.0.bn_a").eps = 1e-3  # torch's is 1e-5
    report = run_checks(model, result, (batch, 3, 32, 32), families=("forward", "layers"))
    layers = _only_failures_name(report, "layers")
    assert layers and {c.details["first_diverging"] for c in layers} == {"stage2.0.bn_a"}


@pytest.mark.parametrize("batch", [2, 8])
def test_a_biased_running_variance_fails_the_batchnorm_family(batch, tmp_path):
    model, result = ported("resnet18")
    result = mutated(result, "var * (n / max(n - 1, 1))", "var", tmp_path)  # Flax's stock update, not torch's
    report = run_checks(model, result, (batch, 3, 32, 32), families=("forward", "batchnorm"))
    (stats,) = _only_failures_name(report, "batchnorm")
    assert "running_var" in stats.where and "biased vs unbiased" in stats.where
    assert report.family("forward")[0].passed  # normalisation itself is right


@pytest.mark.parametrize("batch", [2, 8])
def test_relu6_ported_as_relu_fails_at_that_activation(batch):
    model, result = ported("mobilenet_v2")
    relu6 = [n for n, m in model.named_modules() if isinstance(m, torch.nn.ReLU6)]
    assert relu6
    pl.child(result.module, relu6[0]).fn = jax.nn.relu
    report = run_checks(model, result, (batch, 3, 32, 32), families=("forward", "layers"))
    layers = _only_failures_name(report, "layers")
    assert layers and {c.details["first_diverging"] for c in layers} == {relu6[0]}
