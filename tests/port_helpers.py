"""Helpers of the porter's tests: one port per zoo model per session, and mutated ports."""

from __future__ import annotations

import dataclasses
import shutil

import torch

from parity.port import port
from parity.port.build import import_source

_PORTS: dict = {}


def ported(zoo: dict, name: str):
    """(torch model, PortResult) of zoo[name] under seed 0, ported once at batch 2."""
    if name not in _PORTS:
        torch.manual_seed(0)
        model = zoo[name]()
        _PORTS[name] = model, port(model, torch.randn(2, 3, 32, 32))
    return _PORTS[name]


def mutated(result, old: str, new: str, folder):
    """`result` with its module rebuilt from model.py with the first `old` (which must occur) replaced by
    `new`: a porter's bug, in the shipped code itself."""
    text = result.source
    assert old in text, old
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(text.replace(old, new, 1))
    shutil.copy(result.weights_path, folder / "model.safetensors")
    module = import_source(folder / "model.py").load(folder / "model.safetensors")
    module.train()
    return dataclasses.replace(result, module=module, source_path=folder / "model.py")
