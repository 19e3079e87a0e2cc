"""`parity.port` on the test zoo (tests/zoo, 17 CIFAR-10 families written from their papers): every
model ports, and `--check` passes it at batch 2 — ill-conditioned, BatchNorm over 8 values at the
2x2 stages — and at batch 8: forward, layers, gradient and BatchNorm statistics, float32 judged
against torch float64 with torch's own float32 error as the yardstick (`parity.suite.verdict`),
float64 at batch 2 as well. The wrong ports that must FAIL are in tests/test_port_verdict.py.

Each model is ported once: its program does not depend on the batch size (asserted), so one port
serves both checks.
"""

from __future__ import annotations

import pytest
import torch

from parity.port import port
from parity.port.check import CHECK_FAMILIES, run_checks
from parity.suite.report import float64_agreement, format_table
from tests.zoo import ZOO

NAMES = list(ZOO)
_PORTS: dict = {}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Models this small gain nothing from torch's intra-op threads and lose much on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def ported(name: str):
    if name not in _PORTS:
        torch.manual_seed(0)
        model = ZOO[name]()
        _PORTS[name] = model, port(model, torch.randn(2, 3, 32, 32))
    return _PORTS[name]


@pytest.mark.parametrize("name", NAMES)
def test_ports_every_parameter_for_any_batch_size(name):
    model, result = ported(name)
    n = sum(p.numel() for p in model.parameters())
    assert result.report.torch_params == result.report.flax_params == n
    assert {m.torch_key for m in result.key_map} == set(model.state_dict())
    assert result.module.port_batch_size is None, "a zoo model's port must not depend on the batch size"


@pytest.mark.parametrize("batch", [2, 8])
@pytest.mark.parametrize("name", NAMES)
def test_check_passes(name, batch):
    model, result = ported(name)
    report = run_checks(model, result, (batch, 3, 32, 32), families=CHECK_FAMILIES, float64=batch == 2)
    assert report.passed, format_table(report)
    assert {c.family for c in report.checks} == set(CHECK_FAMILIES)
    if batch == 2:
        assert float64_agreement(report) < 1e-11  # exact math; the float64 allowances are in the table
