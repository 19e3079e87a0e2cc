"""Tiny CIFAR-10 files in each official format, written byte by byte from the format descriptions.

They are written independently of `flax_cnn.data`'s parsers, so a test that loads them back
checks the parsers against the formats, not against themselves.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PER_BATCH = 4  # records per batch file: 5 train files → 20 train examples, 4 test examples


def tiny_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n random uint8 NHWC images and labels 0-9."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def tiny_cifar() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{file stem: (images, labels)} for data_batch_1…5 and test_batch."""
    stems = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {stem: tiny_split(PER_BATCH, seed) for seed, stem in enumerate(stems)}


def binary_record_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Per record: the label byte, then the 1024 R, 1024 G, 1024 B bytes, each plane row by row."""
    out = bytearray()
    for image, label in zip(images, labels):
        out.append(int(label))
        for c in range(3):
            out += image[:, :, c].tobytes()  # C order: row-major over (row, column)
    return bytes(out)


def binary_files(data) -> dict[str, bytes]:
    files = {f"{stem}.bin": binary_record_bytes(*arrays) for stem, arrays in data.items()}
    files["batches.meta.txt"] = ("\n".join(NAMES) + "\n\n").encode()  # the official file ends in blank lines
    return files


def python_files(data, protocol: int = 2) -> dict[str, bytes]:
    """Pickled dicts with bytes keys, b'data' (N, 3072) uint8 rows of R, G, B planes, b'labels' a list."""
    files = {}
    for stem, (images, labels) in data.items():
        rows = np.stack([np.concatenate([im[:, :, c].ravel() for c in range(3)]) for im in images])
        files[stem] = pickle.dumps({b"batch_label": b"tiny", b"labels": [int(x) for x in labels],
                                    b"data": rows, b"filenames": [b"%d.png" % i for i in range(len(labels))]},
                                   protocol=protocol)
    files["batches.meta"] = pickle.dumps({b"label_names": [n.encode() for n in NAMES],
                                          b"num_cases_per_batch": PER_BATCH, b"num_vis": 3072}, protocol=protocol)
    return files


def write_dir(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (root / name).write_bytes(content)
    return root


def write_archive(path: Path, top: str, files: dict[str, bytes]) -> Path:
    """A .tar.gz holding `top/` and the files under it, as the official archives are laid out."""
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(top)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for name, content in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def expected(data, split: str) -> tuple[np.ndarray, np.ndarray]:
    stems = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    return np.concatenate([data[s][0] for s in stems]), np.concatenate([data[s][1] for s in stems])
