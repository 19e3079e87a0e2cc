"""CIFAR-10 through `tfds.data_source` (ArrayRecord, random access, no TensorFlow needed to read)."""

from __future__ import annotations

import numpy as np

from flax_cnn.data.cifar10 import CLASS_NAMES, Cifar10, Split
from flax_cnn.data.errors import DataError


def load_tfds(split: Split, data_dir: str | None = None) -> Cifar10:
    """Read a prepared `cifar10` (array_record format) from `data_dir` (None: tfds's default dir).

    Never prepares it: tfds's cifar10 builder needs TensorFlow and the network to do that.
    """
    import tensorflow_datasets as tfds  # slow to import; only this source needs it

    where = data_dir or "the default tfds data dir"
    try:
        source = tfds.data_source("cifar10", split=split, data_dir=data_dir, download=False)
    except Exception as e:  # tfds raises assorted types here (NotImplementedError, AssertionError, …)
        raise DataError(_not_prepared_message(where, e)) from None
    if len(source) == 0:
        raise DataError(f"tfds: cifar10/{split} in {where} has no examples")
    names = tuple(source.dataset_info.features["label"].names)
    if names == tuple(str(i) for i in range(len(CLASS_NAMES))):
        names = CLASS_NAMES  # a ClassLabel without its names file (e.g. mocked metadata): CIFAR-10's order
    images, labels = [], []
    for i in range(len(source)):  # one by one: tfds.testing.mock_data's __getitems__ is broken in 4.9.10
        example = source[i]
        images.append(example["image"])
        labels.append(example["label"])
    return Cifar10(np.stack(images).astype(np.uint8), np.asarray(labels, dtype=np.int32), names, split,
                   f"tfds:cifar10/{split} in {where}")


def _not_prepared_message(where: str, e: Exception) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return (f"tfds: cannot open cifar10 in {where} ({first}). It must be prepared in the array_record format, "
            "which needs TensorFlow and network access: on such a machine run `tfds build cifar10 "
            "--file_format=array_record --data_dir=DIR`, or pass --data-dir with the official CIFAR-10 files")
