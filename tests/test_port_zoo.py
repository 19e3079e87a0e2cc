"""`parity.port` on the test zoo (tests/zoo, 18 CIFAR-10 families written from their papers): every
model ports, and `--check` passes it at batch 2 — ill-conditioned, BatchNorm over 8 values at the
2x2 stages — and at batch 8: forward, layers, gradient and BatchNorm statistics, float32 judged
against torch float64 with torch's own float32 error as the yardstick (`parity.suite.verdict`),
float64 at batch 2 as well. The wrong ports that must FAIL are in tests/test_port_verdict.py.

Each model is ported once: its program does not depend on the batch size (asserted), so one port
serves both checks. The default suite checks every model at batch 2 and the two that have needed
a batch-8 look (ResNet-18's kink after a residual add, RegNetY's kink in the gradient's compile)
at batch 8, each on 2 candidate batches; `make test-extended` checks all 18 at batch 8 on 4.
"""

from __future__ import annotations

import pytest
import torch

from parity.port.check import CHECK_FAMILIES, CheckInputs, run_checks
from parity.suite.report import float64_agreement, format_table
from tests import port_helpers
from tests.zoo import ZOO

NAMES = list(ZOO)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ported(name: str):
    return port_helpers.ported(ZOO, name)


@pytest.mark.parametrize("name", NAMES)
def test_ports_every_parameter_for_any_batch_size(name):
    model, result = ported(name)
    n = sum(p.numel() for p in model.parameters())
    assert result.report.torch_params == result.report.flax_params == n
    assert {m.torch_key for m in result.key_map} == set(model.state_dict())
    assert result.batch_size is None, "a zoo model's port must not depend on the batch size"


BATCH8 = ("resnet18", "regnet_y")
CASES = [pytest.param(name, 2, 2, id=f"{name}-2") for name in NAMES] + [
    pytest.param(name, 8, 2 if name in BATCH8 else 4, id=f"{name}-8",
                 marks=() if name in BATCH8 else pytest.mark.extended) for name in NAMES]


@pytest.mark.parametrize(("name", "batch", "candidates"), CASES)
def test_check_passes(name, batch, candidates):
    model, result = ported(name)
    report = run_checks(model, result, (batch, 3, 32, 32), families=CHECK_FAMILIES, float64=batch == 2,
                        inputs=CheckInputs(count=candidates))
    assert report.passed, format_table(report)
    assert {c.family for c in report.checks} == set(CHECK_FAMILIES)
    if batch == 2:
        assert float64_agreement(report) < 1e-11  # exact math; the float64 allowances are in the table
