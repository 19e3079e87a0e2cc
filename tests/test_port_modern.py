"""`parity.port` on the modern zoo (tests/zoo/modern.py: ConvNeXt, BiT, two U-Nets, ESPCN, CBAM, a
GhostNet/MixConv mix, a non-local net): each ports to model.py, and `--check` passes it at batch 2 and 8
in every family —
forward, layers, gradient (cross-entropy for classifiers, a fixed random projection for the dense
outputs), BatchNorm statistics — float32 judged against torch float64 with torch's own float32
error as the yardstick, float64 agreeing to 1e-12. The mutations that must FAIL are at the end:
each edits the emitted model.py, so the module under check is rebuilt from the edited file.
"""

from __future__ import annotations

import pytest
import torch

from parity.port.check import CHECK_FAMILIES, CheckInputs, run_checks
from parity.suite import compiled
from parity.suite.report import float64_agreement
from tests import port_helpers
from tests.port_helpers import mutated
from tests.zoo import MODERN, MODERN_OUTPUT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ported(name: str):
    return port_helpers.ported(MODERN, name)


@pytest.mark.parametrize("name", list(MODERN))
def test_ports_every_tensor_with_the_output_shape(name):
    model, result = ported(name)
    assert result.report.torch_params == result.report.flax_params == sum(p.numel() for p in model.parameters())
    assert {m.torch_key for m in result.key_map} == set(model.state_dict())
    assert result.batch_size is None
    out = result.module(torch.randn(8, 32, 32, 3).numpy(), key=__import__("jax").random.key(0))
    expected = MODERN_OUTPUT[name]
    nhwc = (expected[1], expected[2], expected[0]) if len(expected) == 3 else expected
    assert out.shape == (8, *nhwc)


# Ported at batch 2, checked at 2 and 8 (a dense output's projection follows the check's batch);
# make test checks one dense model at 8, make test-extended all.
CASES = [pytest.param(name, 2, id=f"{name}-2") for name in MODERN] + [
    pytest.param(name, 8, id=f"{name}-8", marks=() if name == "unet_bilinear" else pytest.mark.extended)
    for name in MODERN]


@pytest.mark.parametrize(("name", "batch"), CASES)
def test_check_passes(name, batch):
    model, result = ported(name)
    report = run_checks(model, result, (batch, 3, 32, 32), families=CHECK_FAMILIES, float64=True,
                        inputs=CheckInputs(count=2))
    assert report.passed, [(c.family, c.name, c.error, c.tol, c.where) for c in report.failures()]
    assert float64_agreement(report) <= 1e-12
    assert {c.family for c in report.checks} >= {"forward", "layers", "gradient"}
    if len(MODERN_OUTPUT[name]) == 3:  # a dense output: its gradient loss is the stated projection
        assert any("fixed standard-normal projection" in n for n in report.notes)


@pytest.mark.parametrize(("name", "old", "new", "where"), [
    ("unet_bilinear", "(2.0, 2.0), True)", "(2.0, 2.0), False)", "align_corners"),
    ("bit_resnet", "gn1=GroupNorm(8, 16)", "gn1=GroupNorm(4, 16)", "group count"),
    ("unet_transposed", "        w = w[::-1, ::-1]\n", "", "kernel not flipped"),
], ids=["bilinear-align-corners", "groupnorm-groups", "conv-transpose-unflipped"])
def test_a_wrong_port_fails(name, old, new, where, tmp_path):
    """The port's bugs a reader of the issue named: each FAILs the forward family in float32."""
    compiled.clear()
    model, result = ported(name)
    bad = mutated(result, old, new, tmp_path)
    report = run_checks(model, bad, (2, 3, 32, 32), families=("forward",))
    fails = [c for c in report.failures() if "[float32]" in c.name]
    assert fails, f"{where}: the wrong port passed"
    assert all(c.error > 1e3 * c.details["torch_error"] for c in fails)  # materially worse, not rounding
    compiled.clear()
