"""The official CIFAR-10 *binary version*: 3,073-byte records (label, 1024 R, 1024 G, 1024 B).

Parsers take the file's bytes and its name (for error messages), so the same code reads a
directory and the members of `cifar-10-binary.tar.gz`.
"""

from __future__ import annotations

import numpy as np

from flax_cnn.data.cifar10 import CHANNELS, HEIGHT, NUM_CLASSES, WIDTH
from flax_cnn.data.errors import DataError

RECORD_BYTES = 1 + CHANNELS * HEIGHT * WIDTH  # 3,073
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
META_FILE = "batches.meta.txt"


def parse_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Records → (uint8 images (N, 32, 32, 3) NHWC, int32 labels (N,))."""
    if len(data) == 0 or len(data) % RECORD_BYTES:
        raise DataError(f"{name}: size {len(data):,} bytes is not a positive multiple of the "
                        f"{RECORD_BYTES:,}-byte record (truncated or not a CIFAR-10 binary batch)")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int32)
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        raise DataError(f"{name}: record {bad[0]} has label byte {labels[bad[0]]} "
                        f"(must be 0-{NUM_CLASSES - 1}; {bad.size} bad record(s))")
    images = records[:, 1:].reshape(-1, CHANNELS, HEIGHT, WIDTH).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def parse_meta(data: bytes, name: str) -> tuple[str, ...]:
    """`batches.meta.txt` → the class names, one a line in label order (blank lines ignored)."""
    try:
        names = tuple(line.strip() for line in data.decode("utf-8").splitlines() if line.strip())
    except UnicodeDecodeError as e:
        raise DataError(f"{name}: not a text file ({e.reason} at byte {e.start})") from None
    if len(names) != NUM_CLASSES:
        raise DataError(f"{name}: expected {NUM_CLASSES} class names, one a line, found {len(names)}")
    return names
