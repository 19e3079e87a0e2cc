"""Shared fixtures: tiny, deterministic, session-scoped so jit compiles stay few."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pytest
import torch

from flax_cnn.config import ModelConfig


def randomize_torch_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BN affine params and running statistics (not the 0/1 defaults) on a torch model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.4 - 0.2)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
                m.num_batches_tracked.fill_(7)
    return model


@pytest.fixture(scope="session")
def cfg() -> ModelConfig:
    return ModelConfig()


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """8 NCHW float32 images, roughly normalised."""
    return np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)


@pytest.fixture(scope="session")
def real_data_dir():
    """The real CIFAR-10 binary files: $CIFAR10_DIR or ../shared/data/cifar10 (skips if absent)."""
    from pathlib import Path

    here = Path(__file__).resolve().parents[1]
    d = Path(os.environ.get("CIFAR10_DIR", here.parent / "shared" / "data" / "cifar10"))
    if not (d / "test_batch.bin").is_file():
        if os.environ.get("FLAX_CNN_REQUIRE_REAL_DATA") == "1":
            pytest.fail(f"real CIFAR-10 required but not found at {d}")
        pytest.skip(f"real CIFAR-10 not found at {d} (set CIFAR10_DIR)")
    return d
