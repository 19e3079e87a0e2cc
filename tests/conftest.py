"""Shared fixtures: tiny, deterministic, session-scoped so jit compiles stay few."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import jax

# Four XLA CPU devices for the sharding tests; must happen before JAX initialises its backend.
jax.config.update("jax_num_cpu_devices", 4)

# Many tests build the same small programs (and subprocesses rebuild them): share compilations
# through a persistent cache, here and in every subprocess the tests start.
import tempfile  # noqa: E402

_CACHE = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "flax_cnn_test_jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from flax_cnn.model.config import BlockSpec, ConvSpec, ModelConfig  # noqa: E402

pytest_plugins = ["tests.train_fixtures"]

# A 4-layer net with a stride-2, a depthwise-separable and a dilated conv: compiles in seconds.
# ReLU as the default net; dropout 0: the tests compare train mode with no dropout drawn (a call
# needs no key), and dropout has its own same-mask checks (a pair built with a rate > 0).
TINY = ModelConfig(blocks=(BlockSpec("c1", (ConvSpec(8), ConvSpec(16, stride=2))),
                           BlockSpec("c2", (ConvSpec(16, separable=True), ConvSpec(16, dilation=2)))),
                   activation="relu", dropout=0.0)


def randomize_torch_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BN affine params and running statistics (not the 0/1 defaults), and 7 batches tracked."""
    from parity.suite.pair import randomize_bn_

    randomize_bn_(model, seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.num_batches_tracked.fill_(7)
    return model


@pytest.fixture(scope="session")
def cfg() -> ModelConfig:
    """The default architecture without its dropout (see TINY)."""
    return ModelConfig().replace(dropout=0.0)


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


@pytest.fixture(scope="session")
def tiny_model_json(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model") / "tiny.json"
    path.write_text(json.dumps(TINY.to_dict()))
    return str(path)


def write_binary_cifar(root: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """A small CIFAR-10 in the official binary layout (random pixels, labels cycling 0-9)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)

    def records(n):
        labels = (np.arange(n) % 10).astype(np.uint8)[:, None]
        return np.concatenate([labels, rng.integers(0, 256, (n, 3072), dtype=np.uint8)], 1)

    per = n_train // 5
    for i in range(1, 6):
        records(per).tofile(root / f"data_batch_{i}.bin")
    records(n_test).tofile(root / "test_batch.bin")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (root / "batches.meta.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.fixture(scope="session")
def train_data_dir(tmp_path_factory) -> str:
    """The real CIFAR-10 when present (trainer tests use a slice of it), else a generated one."""
    here = Path(__file__).resolve().parents[1]
    d = Path(os.environ.get("CIFAR10_DIR", here.parent / "shared" / "data" / "cifar10"))
    if (d / "test_batch.bin").is_file():
        return str(d)
    if os.environ.get("FLAX_CNN_REQUIRE_REAL_DATA") == "1":
        pytest.fail(f"real CIFAR-10 required but not found at {d}")
    return str(write_binary_cifar(tmp_path_factory.mktemp("cifar")))


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """No test leaks a torch thread count: a float reduction's order follows it, so a run trained
    under one count and resumed under another differs in the 7th digit (CI saw it)."""
    import sys

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and before is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Zoo-sized nets gain nothing from torch's intra-op threads and lose much on a busy machine
    (use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
