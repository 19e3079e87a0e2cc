"""`python -m parity.port`: weights, port report and parity report from `pkg.module:factory`."""

from __future__ import annotations

import json
import runpy
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from parity.port.cli import main


class TinyNet(nn.Module):
    """conv-BN-ReLU, max-pool, a residual 3×3, flatten + dropout + Linear: every family has work to do."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        out = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        out = F.relu(out + self.bn2(self.conv2(out)))
        return self.fc(self.drop(out.view(out.size(0), -1)))


def test_cli_writes_torch_loadable_weights_and_both_reports(tmp_path, capsys):
    rc = main(["--module", "tests.test_port_cli:TinyNet", "--input-shape", "2,3,8,8", "--out", str(tmp_path),
               "--check", "--seed", "3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "ported TinyNet" in out and "PASS" in out
    # 8*8*4*3*9 + 4*4*4*4*9 + 64*3 = 9,408 MACs; a Linear over the flattened 4x4 map: no field rule
    assert "0.01 M MACs per image, receptive field n/a (reshape)" in out
    # The weights are the factory's, in torch naming: a fresh TinyNet loads them strictly.
    torch.manual_seed(3)
    ref = TinyNet()
    saved = load_file(str(tmp_path / "model.safetensors"))
    ref.load_state_dict(saved, strict=True)
    for k, v in TinyNet().state_dict().items():
        assert saved[k].shape == v.shape
    port_report = json.loads((tmp_path / "port_report.json").read_text())
    assert port_report["torch_params"] == port_report["flax_params"] == sum(p.numel() for p in ref.parameters())
    assert any("flatten-then-Linear" in r["flax"] for r in port_report["rows"])
    assert "| conv1 |" in (tmp_path / "port_report.md").read_text()
    parity_report = json.loads((tmp_path / "parity_report.json").read_text())
    families = {c["family"] for c in parity_report["checks"]}
    assert parity_report["passed"] and families == {"forward", "layers", "gradient", "batchnorm"}
    assert "PASS" in (tmp_path / "parity_report.txt").read_text()


def test_python_m_parity_port_reports_an_unportable_model_in_one_line(tmp_path, capsys, monkeypatch):
    """`python -m parity.port` runs parity/port/__main__.py (here in-process: a new interpreter costs 8 s)."""
    monkeypatch.setattr(sys, "argv", ["parity.port", "--module", "tests.test_port_errors:WithLSTM",
                                      "--input-shape", "1,3,8,8", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("parity.port", run_name="__main__", alter_sys=True)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("python -m parity.port: error: head.rnn (LSTM): unsupported module "
                             "torch.nn.modules.rnn.LSTM")
    assert not (tmp_path / "model.safetensors").exists()


def test_cli_rejects_a_bad_factory_and_shape(tmp_path, capsys):
    assert main(["--module", "tests.test_port_cli", "--input-shape", "1,3,8,8", "--out", str(tmp_path)]) == 2
    assert main(["--module", "tests.test_port_cli:TinyNet", "--input-shape", "1,3,8", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["python -m parity.port: error: --module 'tests.test_port_cli': expected pkg.module:factory",
                   "python -m parity.port: error: --input-shape '1,3,8': expected four positive sizes N,C,H,W"]
    np.testing.assert_equal(sorted(p.name for p in tmp_path.iterdir()), [])
