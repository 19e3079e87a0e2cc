"""`load_cifar10`: one entry for every source of CIFAR-10, chosen by its `source` argument.

    None               download the official binary archive once into the cache, verify its MD5
    "tfds" / "tfds:DIR" tfds.data_source("cifar10") prepared in DIR (default: tfds's data dir)
    a directory        the official binary or python layout (or a dir holding cifar-10-batches-*/
                       or one of the official archives)
    a .tar.gz file     cifar-10-binary.tar.gz or cifar-10-python.tar.gz, read without extracting
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import numpy as np

from flax_cnn.data import binary_format, python_format
from flax_cnn.data.archive import ARCHIVE_DIRS, read_members
from flax_cnn.data.cifar10 import SPLITS, Cifar10, Split
from flax_cnn.data.download import OFFICIAL_MD5, OFFICIAL_URL, fetch_archive
from flax_cnn.data.errors import DataError

SOURCE_HELP = ("CIFAR-10 source: a directory in the official binary or python layout, an official .tar.gz, "
               "'tfds' or 'tfds:DIR'; omitted: download the official binary archive into $FLAX_CNN_CACHE "
               "(default ~/.cache/flax_cnn) once")
LAYOUTS: dict[str, ModuleType] = {"binary": binary_format, "python": python_format}
ARCHIVE_NAMES = ("cifar-10-binary.tar.gz", "cifar-10-python.tar.gz")


def load_cifar10(source: str | os.PathLike | None = None, split: Split = "train", *, limit: int | None = None,
                 cache_dir: str | os.PathLike | None = None, url: str = OFFICIAL_URL,
                 md5: str = OFFICIAL_MD5) -> Cifar10:
    """One split of CIFAR-10 from `source` (see the module docstring), optionally cut to `limit` examples.

    The subset is deterministic and class-balanced (`Cifar10.subset`). `cache_dir`, `url` and `md5`
    only matter when `source` is None. Raises DataError naming the file and what is wrong.
    """
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be >= 1 (or None for all), got {limit}")
    if source is None:
        archive = fetch_archive(url, md5, Path(cache_dir) if cache_dir is not None else None)
        data = load_archive(archive, split)
    elif str(source) == "tfds" or str(source).startswith("tfds:"):
        from flax_cnn.data.tfds_source import load_tfds

        data = load_tfds(split, str(source)[5:] or None)
    else:
        data = load_path(Path(source), split)
    return data.subset(limit)


def load_path(path: Path, split: Split) -> Cifar10:
    """A directory in an official layout, or an official archive file."""
    if path.is_file():
        return load_archive(path, split)
    if not path.is_dir():
        raise DataError(f"{path}: no such directory or archive")
    layout = detect_layout(path)
    if layout in LAYOUTS:
        return _load_files(LAYOUTS[layout], split, str(path), lambda name: _read_file(path / name, layout))
    return load_path(path / layout, split)  # a subdirectory or an archive inside `path`


def detect_layout(root: Path) -> str:
    """"binary" or "python" for a directory in that layout, else the name of the entry to descend into."""
    for layout, fmt in LAYOUTS.items():
        if any((root / name).is_file() for name in (*fmt.TRAIN_FILES, *fmt.TEST_FILES, fmt.META_FILE)):
            return layout
    for entry in (*ARCHIVE_DIRS, *ARCHIVE_NAMES):
        if (root / entry).exists():
            return entry
    raise DataError(f"{root}: no CIFAR-10 files found (expected the binary layout data_batch_1.bin … "
                    "test_batch.bin + batches.meta.txt, the python layout data_batch_1 … test_batch + "
                    f"batches.meta, a cifar-10-batches-*/ directory or {' / '.join(ARCHIVE_NAMES)})")


def load_archive(path: Path, split: Split) -> Cifar10:
    """An official archive (binary or python version), read without extracting."""
    wanted = {name for fmt in LAYOUTS.values() for name in _files(fmt, split)}
    layout, members = read_members(path, wanted)
    top = next(d for d, lay in ARCHIVE_DIRS.items() if lay == layout)

    def read(name: str) -> bytes:
        if name not in members:
            raise DataError(f"{path}: missing member {top}/{name}")
        return members[name]

    return _load_files(LAYOUTS[layout], split, f"{path}:{top}", read)


def _files(fmt: ModuleType, split: Split) -> tuple[str, ...]:
    return (*(fmt.TRAIN_FILES if split == "train" else fmt.TEST_FILES), fmt.META_FILE)


def _read_file(path: Path, layout: str) -> bytes:
    if not path.is_file():
        fmt = LAYOUTS[layout]
        raise DataError(f"{path}: missing (a directory in the {layout} layout needs "
                        f"{', '.join((*fmt.TRAIN_FILES, *fmt.TEST_FILES, fmt.META_FILE))})")
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None


def _load_files(fmt: ModuleType, split: Split, where: str, read) -> Cifar10:
    names = fmt.parse_meta(read(fmt.META_FILE), f"{where}/{fmt.META_FILE}")
    parts = [fmt.parse_batch(read(name), f"{where}/{name}")
             for name in (fmt.TRAIN_FILES if split == "train" else fmt.TEST_FILES)]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return Cifar10(images, labels, names, split, where)
