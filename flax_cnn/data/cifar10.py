"""The CIFAR-10 split as arrays in memory, and the deterministic subset the trainers use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from flax_cnn.data.errors import DataError

Split = Literal["train", "test"]
SPLITS: tuple[Split, ...] = ("train", "test")

HEIGHT = WIDTH = 32
CHANNELS = 3
NUM_CLASSES = 10
CLASS_NAMES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)


@dataclass(frozen=True, eq=False)
class Cifar10:
    """One split: `images` uint8 (N, 32, 32, 3) NHWC RGB, `labels` int32 (N,), class names in label order.

    `source` says where the arrays came from (a path, an archive, "tfds:…"), for logs.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    split: Split
    source: str

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.dtype != np.uint8 or self.images.shape != (n, HEIGHT, WIDTH, CHANNELS):
            raise DataError(f"{self.source}: images must be uint8 ({n}, 32, 32, 3), "
                            f"got {self.images.dtype} {self.images.shape}")
        if self.labels.dtype != np.int32 or self.labels.ndim != 1:
            raise DataError(f"{self.source}: labels must be int32 (N,), got {self.labels.dtype} {self.labels.shape}")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise DataError(f"{self.source}: labels must be in 0..{len(self.class_names) - 1}, "
                            f"got {self.labels.min()}..{self.labels.max()}")

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> np.ndarray:
        """Examples per class, (num_classes,) int64."""
        return np.bincount(self.labels, minlength=len(self.class_names))

    def subset(self, limit: int | None) -> Cifar10:
        """The first `limit` examples of a class-balanced round robin (see `balanced_prefix`); None = all."""
        if limit is None or limit >= len(self):
            return self
        keep = balanced_prefix(self.labels, limit)
        return Cifar10(self.images[keep], self.labels[keep], self.class_names, self.split,
                       f"{self.source} (subset {limit})")


def balanced_prefix(labels: np.ndarray, limit: int) -> np.ndarray:
    """Indices of a deterministic, class-balanced subset of `limit` examples, in file order.

    Examples are ranked by their position within their class (the 1st of each class, then the 2nd,
    …; ties in file order) and the first `limit` are kept: every class gets ⌊limit/K⌋ or ⌈limit/K⌉
    examples while it has enough, no seed is involved, and subset(n) ⊂ subset(n + 1).
    """
    if limit < 0:
        raise DataError(f"subset size must be >= 0, got {limit}")
    labels = np.asarray(labels)
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        rank[where] = np.arange(len(where))
    order = np.lexsort((np.arange(len(labels)), rank))  # by rank, then file position
    return np.sort(order[:limit])
