"""The official CIFAR-10 *python version*: pickled dicts, read with a restricted unpickler.

A pickle can name any importable callable; these files only need numpy's array reconstruction,
so everything else (os.system, eval, …) is refused before it can run.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from flax_cnn.data.cifar10 import CHANNELS, HEIGHT, NUM_CLASSES, WIDTH
from flax_cnn.data.errors import DataError

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"

# (module, name) pairs the official files (numpy 1.x pickles from Python 2) and re-pickled copies
# (numpy 2, protocols 2-5) contain. `_codecs.encode` is how protocol 2 stores bytes in Python 3.
ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
})


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only ALLOWED_GLOBALS; names the refused global in the error."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return super().find_class(module, name)


def safe_load(data: bytes, name: str) -> dict:
    """Unpickle a CIFAR-10 python-version file (bytes keys, as the Python 2 originals) into a dict."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("refused global"):
            raise DataError(f"{name}: pickle {e} (only numpy arrays, lists, dicts and bytes are allowed; "
                            "the file may be malicious)") from None
        raise DataError(f"{name}: not a valid pickle ({e})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise DataError(f"{name}: not a valid pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{name}: expected a pickled dict, got {type(obj).__name__}")
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def parse_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A pickled batch (b'data' (N, 3072) uint8 rows of R, G, B planes; b'labels') → NHWC, int32."""
    d = safe_load(data, name)
    for key in (b"data", b"labels"):
        if key not in d:
            raise DataError(f"{name}: missing key {key!r} (keys: {sorted(d)})")
    rows = d[b"data"]
    if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8 or rows.ndim != 2 \
            or rows.shape[1] != CHANNELS * HEIGHT * WIDTH:
        raise DataError(f"{name}: b'data' must be a uint8 array (N, 3072), got "
                        f"{type(rows).__name__} {getattr(rows, 'dtype', '')} {getattr(rows, 'shape', '')}")
    try:
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{name}: b'labels' is not a list of integers ({e})") from None
    if labels.shape != (len(rows),):
        raise DataError(f"{name}: {len(rows)} images but b'labels' has shape {labels.shape}")
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        raise DataError(f"{name}: record {bad[0]} has label {labels[bad[0]]} "
                        f"(must be 0-{NUM_CLASSES - 1}; {bad.size} bad record(s))")
    images = rows.reshape(-1, CHANNELS, HEIGHT, WIDTH).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int32)


def parse_meta(data: bytes, name: str) -> tuple[str, ...]:
    """`batches.meta` → the class names (b'label_names')."""
    d = safe_load(data, name)
    names = d.get(b"label_names")
    if not isinstance(names, list) or len(names) != NUM_CLASSES:
        raise DataError(f"{name}: b'label_names' must be a list of {NUM_CLASSES} names, got {names!r:.80}")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)
