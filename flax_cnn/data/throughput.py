"""Images per second of each augmentation path, for `python -m parity.bench` and the data CLI.

Nothing here asserts a speed: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from flax_cnn.augment.config import AugmentConfig, AugmentMode
from flax_cnn.data.stats import ChannelStats


def measure(images: np.ndarray, labels: np.ndarray, stats: ChannelStats, *, augment: AugmentMode,
            workers: int = 0, batch_size: int = 256, batches: int = 20,
            augment_config: AugmentConfig = AugmentConfig()) -> float:
    """Steady-state images/s of one path; the first batch (imports, worker start, jit compile) is not timed.

    CPU paths ("albumentations", "none") time `TrainLoader` producing batches with `workers`
    processes and nobody consuming them; "device" times the jitted JAX augmentation on JAX's
    default device, including the host-to-device copy of the uint8 batch.
    """
    if augment == "device":
        return _measure_device(images, stats, augment_config, batch_size, batches)
    from flax_cnn.data.pipeline import TrainLoader

    with TrainLoader(images, labels, batch_size=batch_size, seed=0, augment=augment,
                     augment_config=augment_config, stats=stats, workers=workers) as loader:
        stream = itertools.chain.from_iterable(loader.epoch(e) for e in itertools.count())
        next(stream)
        start = time.perf_counter()
        for _ in range(batches):
            next(stream)
        return batches * batch_size / (time.perf_counter() - start)


def _measure_device(images, stats, cfg, batch_size, batches) -> float:
    import jax

    from flax_cnn.augment.on_device import make_device_augment

    augment = make_device_augment(cfg, stats)
    host = [images[(np.arange(batch_size) + i * batch_size) % len(images)] for i in range(batches + 1)]
    key = jax.random.key(0)
    augment(key, jax.device_put(host[0])).block_until_ready()
    start = time.perf_counter()
    for i, batch in enumerate(host[1:]):
        out = augment(jax.random.fold_in(key, i), jax.device_put(batch))
    out.block_until_ready()
    return batches * batch_size / (time.perf_counter() - start)


def measure_all(images: np.ndarray, labels: np.ndarray, stats: ChannelStats, *, workers=(0, 1, 2),
                batch_size: int = 256, batches: int = 20, augment_config: AugmentConfig = AugmentConfig(),
                device: bool = True) -> dict[str, float]:
    """{"albumentations/workers=N": …, "none/workers=0": …, "device": …} in images/s."""
    result = {}
    for w in workers:
        result[f"albumentations/workers={w}"] = measure(images, labels, stats, augment="albumentations", workers=w,
                                                        batch_size=batch_size, batches=batches,
                                                        augment_config=augment_config)
    result["none/workers=0"] = measure(images, labels, stats, augment="none", batch_size=batch_size,
                                       batches=batches)
    if device:
        result["device"] = measure(images, labels, stats, augment="device", batch_size=batch_size,
                                   batches=batches, augment_config=augment_config)
    return result
