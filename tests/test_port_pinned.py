"""Pinned kink decisions (parity/suite/pinned.py): with the Flax forward's decisions injected, torch's
gradient is the same function where nothing flips, a decisions check passes rounding flips and
fails real ones, and the pinned gradient verdict still passes an exact port and fails a wrong one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from parity.port import port
from parity.port.check import calibrated_bn, random_batches
from parity.port.probe import KinkSite, PortProbe
from parity.suite import compiled, pinned
from parity.suite.gradient import gradients, pinned_gradient_checks
from tests.zoo.resnet import resnet18
from tests.zoo.vgg import vgg11


def _probed(build):
    """(BN-calibrated torch model, its port, the port's kink probe, a batch, labels), seed 0."""
    torch.manual_seed(0)
    model = build(width=4)
    result = port(model, torch.randn(2, 3, 32, 32))
    x, y = random_batches((2, 3, 32, 32), 10, count=1)[0]
    model = calibrated_bn(model, random_batches((16, 3, 32, 32), 2, count=1, seed=1)[0][0])
    return model, result, PortProbe(result), x, y


@pytest.fixture(scope="module")
def pair(one_torch_thread):
    return _probed(resnet18)


def test_pinned_to_the_exact_decisions_is_torchs_own_gradient(pair):
    """float64, decisions from torch's own float64 forward: the interpreter with pins computes the
    same gradient as the module (each kink op's branch equals the op on its own side)."""
    model, result, probe, x, y = pair
    exact = probe.torch_inputs(model.double(), x, "float64")
    model.float()
    _, natural, _ = gradients(model, result.module, result.key_map, x, y, dtype="float64", torch_only=True)
    _, pinned_grads = pinned.torch_gradients(probe, model, result.module, result.key_map, x, y, exact,
                                             dtype="float64")
    assert set(pinned_grads) == set(natural)
    assert max(float(np.max(np.abs(pinned_grads[k] - natural[k]))) for k in natural) < 1e-13


def test_a_flip_within_rounding_passes_and_a_far_one_fails():
    site = KinkSite("relu", "x", (0.0,), False, fn="relu")
    probe = type("P", (), {"sites": [site]})()
    exact = np.array([1e-8, 0.5, -0.25])
    torch32 = exact + np.array([1e-7, 0.0, 0.0])  # torch float32's own error at this op: 1e-7
    near = np.array([-1e-9, 0.5, -0.25])           # flips the first value: 1e-8 from the kink, rounding
    far = np.array([1e-8, -0.5, -0.25])            # flips the second: 0.5 from the kink, a bug
    ok = pinned.decisions_check(probe, {"relu": exact}, {"relu": near}, {"relu": torch32})
    bad = pinned.decisions_check(probe, {"relu": exact}, {"relu": far}, {"relu": torch32})
    assert ok.passed and ok.details["flips"] == 1
    assert not bad.passed and bad.error > 1e6


def test_pinned_verdict_passes_the_exact_port_and_fails_a_wrong_one(pair, tmp_path):
    model, result, probe, x, y = pair
    checks = pinned_gradient_checks(probe, model, result.module, result.key_map, x, y, dtypes=("float32", "float64"))
    assert all(c.passed for c in checks), [(c.name, c.error, c.tol, c.where) for c in checks]
    assert any("pinned" in c.where for c in checks if "[float32]" in c.name and "tensors" in c.name)

    compiled.clear()
    bad = dataclasses.replace(result, module=_with_eps(result, 1e-3))
    checks = pinned_gradient_checks(PortProbe(bad), model, bad.module, bad.key_map, x, y, dtypes=("float32",))
    assert not all(c.passed for c in checks if "[float32]" in c.name)
    compiled.clear()


def _with_eps(result, eps: float):
    """The same port with one BatchNorm's eps wrong (torch's is 1e-5)."""
    from parity.port import layers as pl
    from flax import nnx

    module = nnx.clone(result.module)
    pl.child(module, "stage2.0.bn_a").eps = eps
    return module


@pytest.fixture(scope="module")
def pooled(one_torch_thread):
    """A VGG-11 (five 2x2 max-pools after ReLUs): its windows' maxima are kink sites too."""
    return _probed(vgg11)


def test_max_pools_are_pinned_to_the_window_maximum_chosen(pooled):
    """Pinned to torch's own float64 choices the gradient is unchanged; pinned to another element of a
    window, the gradient reaches that element instead."""
    model, result, probe, x, y = pooled
    assert pinned.pinnable(probe) and sum(s.pool is not None for s in probe.sites) == 5
    exact = probe.torch_inputs(model.double(), x, "float64")
    model.float()
    _, natural, _ = gradients(model, result.module, result.key_map, x, y, dtype="float64", torch_only=True)
    _, same = pinned.torch_gradients(probe, model, result.module, result.key_map, x, y, exact, dtype="float64")
    assert max(float(np.max(np.abs(same[k] - natural[k]))) for k in natural) < 1e-13
    pool = next(s.op for s in probe.sites if s.pool is not None)
    moved = dict(exact, **{pool: -exact[pool]})  # every window of the first pool now "chose" its minimum
    _, other = pinned.torch_gradients(probe, model, result.module, result.key_map, x, y, moved, dtype="float64")
    assert max(float(np.max(np.abs(other[k] - natural[k]))) for k in natural) > 1e-3


def test_a_moved_window_maximum_within_rounding_passes_and_a_far_one_fails():
    site = KinkSite("pool", "x", (), True, pool=(2, 2, 0, 1, False))
    probe = type("P", (), {"sites": [site]})()
    exact = np.array([0.5, 0.5 + 1e-8, 0.1, 0.2]).reshape(1, 2, 2, 1)  # NHWC: one 2x2 window
    torch32 = exact + 1e-7                                            # torch float32's own error: 1e-7
    near = np.array([0.5 + 2e-8, 0.5 + 1e-8, 0.1, 0.2]).reshape(1, 2, 2, 1)  # chose an element 1e-8 below
    far = np.array([0.5, 0.5 + 1e-8, 0.9, 0.2]).reshape(1, 2, 2, 1)          # chose one 0.4 below: a bug
    ok = pinned.decisions_check(probe, {"pool": exact}, {"pool": near}, {"pool": torch32})
    bad = pinned.decisions_check(probe, {"pool": exact}, {"pool": far}, {"pool": torch32})
    assert ok.passed and ok.details["flips"] == 1
    assert not bad.passed and bad.error > 1e6 and "window maximum" in bad.where


def test_pinned_verdict_passes_an_exact_port_with_max_pools(pooled):
    model, result, probe, x, y = pooled
    checks = pinned_gradient_checks(probe, model, result.module, result.key_map, x, y, dtypes=("float32", "float64"))
    assert all(c.passed for c in checks), [(c.name, c.error, c.tol, c.where) for c in checks]
