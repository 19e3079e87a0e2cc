"""Ported models whose forward returns a tuple or a dict (a classifier with a segmentation head, torchvision's
{"out", "aux"} idiom): model.py returns the same structure, and `--check` judges every output on its own —
forward per output, the gradient of a fixed random projection of all of them — in float32 and float64.
A port wrong in one small output FAILs on that output, and the gradient sees it too."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from parity.port import port
from parity.port.check import CHECK_FAMILIES, CheckInputs, run_checks
from parity.suite import compiled
from parity.suite.report import float64_agreement
from tests.port_helpers import mutated

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TwoHeads(nn.Module):
    """A classifier and a 2-class mask head on one trunk; the output a dict (or a tuple) with a nested tuple."""

    def __init__(self, as_dict: bool = True):
        super().__init__()
        self.as_dict = as_dict
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.cls = nn.Linear(16, 10)
        self.seg = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        f = F.relu(self.down(self.stem(x)))
        mask = F.interpolate(self.seg(f), scale_factor=2, mode="bilinear", align_corners=False)
        logits = self.cls(f.mean((2, 3)))
        if self.as_dict:
            return {"logits": logits, "mask": mask, "aux": (f.amax((2, 3)), 0.01 * mask.sigmoid())}
        return logits, mask


_PORTS: dict = {}


def _ported(as_dict: bool):
    if as_dict not in _PORTS:
        torch.manual_seed(0)
        model = TwoHeads(as_dict=as_dict)
        _PORTS[as_dict] = model, port(model, torch.randn(2, 3, 32, 32))
    return _PORTS[as_dict]


@pytest.fixture(params=[True, False], ids=["dict", "tuple"])
def two_heads(request):
    return _ported(request.param)


def test_model_py_returns_the_same_structure(two_heads):
    model, result = two_heads
    if model.as_dict:
        assert "return {'logits': " in result.source and "'aux': (" in result.source
    else:
        assert "return (cls, interpolate)" in result.source


def test_every_output_is_checked_and_the_check_passes(two_heads):
    model, result = two_heads
    report = run_checks(model, result, (2, 3, 32, 32), families=CHECK_FAMILIES, float64=True,
                        inputs=CheckInputs(count=2))
    assert report.passed, [(c.family, c.name, c.error, c.tol) for c in report.failures()]
    assert float64_agreement(report) <= 1e-12
    outputs = ["['logits']", "['mask']", "['aux'][0]", "['aux'][1]"] if model.as_dict else ["[0]", "[1]"]
    for path in outputs:  # eval and train mode, float32 and float64
        assert sum(c.name.endswith(f"output{path}") for c in report.checks if c.family == "forward") == 4, path
    grads = [c for c in report.checks if c.family == "gradient"]
    assert grads and all(c.details.get("skipped") is None and c.passed for c in grads)
    assert any("summed over the outputs" in n and "tuple/dict" in n for n in report.notes)


def test_a_wrong_small_output_fails_on_its_own(tmp_path):
    """aux[1], a 0.01-scaled sigmoid, wrongly ported as a tanh: compared alone it is off by far more than
    rounding, though next to the logits it would be a small part of one concatenated output."""
    model, result = _ported(as_dict=True)
    compiled.clear()
    bad = mutated(result, "jax.nn.sigmoid(", "jnp.tanh(", tmp_path)
    report = run_checks(model, bad, (2, 3, 32, 32), families=("forward", "gradient"), inputs=CheckInputs(count=2))
    fails = {c.name for c in report.failures()}
    assert any(n.endswith("output['aux'][1]") for n in fails), fails
    assert not any(n.endswith("output['logits']") for n in fails)  # the rest still agrees
    assert any(c.family == "gradient" and not c.passed for c in report.checks)
    compiled.clear()


@pytest.fixture(scope="module")
def centernet():
    """CenterNet (tests/zoo/centernet.py, written from the paper for this test): a dict of three dense
    heads over depthwise up-convolutions. Its weights are jittered as training would leave them: the
    paper's bilinear up-convolution kernels are symmetric, and a symmetric kernel hides an unflipped one."""
    from tests.zoo.centernet import centernet as build

    torch.manual_seed(0)
    model = build()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * p.detach().abs().mean() * torch.randn_like(p))
    return model, port(model, torch.randn(2, 3, 32, 32))


def test_a_paper_model_with_dict_outputs_ports_and_passes(centernet):
    model, result = centernet
    assert "return {'hm': " in result.source and "feature_group_count=g" in result.source
    report = run_checks(model, result, (2, 3, 32, 32), families=CHECK_FAMILIES, float64=True,
                        inputs=CheckInputs(count=2))
    assert report.passed, [(c.family, c.name, c.error, c.tol) for c in report.failures()]
    assert float64_agreement(report) <= 1e-12
    assert {c.name.rsplit("output", 1)[1] for c in report.checks if c.family == "forward"} == {
        "['hm']", "['wh']", "['reg']"}


def test_an_unflipped_grouped_up_convolution_fails(centernet, tmp_path):
    model, result = centernet
    compiled.clear()
    bad = mutated(result, "        w = w[::-1, ::-1]\n", "", tmp_path)
    report = run_checks(model, bad, (2, 3, 32, 32), families=("forward", "layers"))
    fails = [c for c in report.failures() if "[float32]" in c.name]
    assert fails and all(c.error > 1e3 * c.details["torch_error"] for c in fails if "torch_error" in c.details)
    assert any("ups.0.up" in c.where for c in fails if c.family == "layers"), [(c.name, c.where) for c in fails]
    compiled.clear()
