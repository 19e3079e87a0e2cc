"""Inputs for the suite: training batches and the test split (real CIFAR-10 when present, else
random normal images), normalised once so both twins see the same float32 NCHW arrays."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Batch = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Normalisation:
    """Per-channel (x/255 - mean) / std; the default x/255 - 0.5 is fine when the weights are random."""

    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    source: str = "x/255 - 0.5"

    def __call__(self, images_nhwc_uint8: np.ndarray) -> np.ndarray:
        x = images_nhwc_uint8.astype(np.float32) / np.float32(255)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def find_data_dir(explicit: str | None = None) -> Path | None:
    """`explicit`, else $CIFAR10_DIR, else ../shared/data/cifar10 (from here or the repo root); None if absent."""
    repo = Path(__file__).resolve().parents[2]
    candidates = [explicit] if explicit else [os.environ.get("CIFAR10_DIR"), "../shared/data/cifar10",
                                              str(repo.parent / "shared" / "data" / "cifar10")]
    for c in candidates:
        if c and Path(c).exists():
            return Path(c)
    return None


def random_batches(n: int, batch_size: int, *, shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10,
                   seed: int = 0) -> list[Batch]:
    """Standard-normal images and uniform labels: no data needed, no augmentation randomness."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch_size,) + shape).astype(np.float32),
             rng.integers(0, num_classes, batch_size).astype(np.int64)) for _ in range(n)]


def cifar_batches(data_dir: Path, n: int, batch_size: int, norm: Normalisation) -> list[Batch]:
    """The first n*batch_size training images in file order (no shuffling, no augmentation)."""
    from flax_cnn.data import load_cifar10

    d = load_cifar10(str(data_dir), "train")
    if len(d) < n * batch_size:
        raise ValueError(f"{data_dir}: {len(d)} training images, need {n * batch_size}")
    x = norm(d.images[:n * batch_size])
    y = d.labels[:n * batch_size].astype(np.int64)
    return [(x[i * batch_size:(i + 1) * batch_size], y[i * batch_size:(i + 1) * batch_size]) for i in range(n)]


def cifar_test(data_dir: Path, norm: Normalisation, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images NCHW float32, labels) of the test split (a class-balanced subset with `limit`)."""
    from flax_cnn.data import load_cifar10

    d = load_cifar10(str(data_dir), "test", limit=limit)
    return norm(d.images), d.labels.astype(np.int64)
