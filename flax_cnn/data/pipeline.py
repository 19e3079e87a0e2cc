"""The input pipelines the trainers (JAX and PyTorch alike) iterate: numpy batches out, nothing framework-specific.

Training batches are a pure function of (seed, epoch, step): the epoch's permutation comes from
(seed, epoch) and the batch's augmentation from (seed, epoch, step). So the number of grain
workers, and where an epoch was started or resumed, never change what a step sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from flax_cnn.model.config import ConfigError
from flax_cnn.augment.config import AUGMENT_MODES, AugmentConfig, AugmentMode
from flax_cnn.data.errors import DataError
from flax_cnn.data.stats import ChannelStats, normalize

# Far enough ahead that one live grain iterator serves a whole run; it is lazy, so the size is free.
_HORIZON_EPOCHS = 1_000_000


def _check_arrays(images: np.ndarray, labels: np.ndarray, who: str) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{who}: images must be a uint8 NHWC array with 3 channels, got "
                        f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}")
    if np.shape(labels) != (len(images),):
        raise DataError(f"{who}: {len(images)} images but labels have shape {np.shape(labels)}")


class BatchMaker:
    """(global step) → one training batch; picklable, so grain can run it in worker processes."""

    def __init__(self, images, labels, batch_size: int, seed: int, steps_per_epoch: int, mode: AugmentMode,
                 augment_config: AugmentConfig, stats: ChannelStats, epochs: int | None = None):
        self.images, self.labels = images, labels.astype(np.int32)
        self.batch_size, self.seed, self.steps_per_epoch, self.mode = batch_size, seed, steps_per_epoch, mode
        self.stats, self.augment_config, self.epochs = stats, augment_config, epochs
        self._augmenters: dict[AugmentConfig, object] = {}  # one per distinct per-epoch config
        self._order: tuple[int, np.ndarray] | None = None  # the current epoch's permutation

    def augmenter(self, epoch: int):
        """The albumentations augmenter of `epoch` (its probabilities follow AugmentConfig.fade_epochs)."""
        from flax_cnn.augment.albumentations_cpu import AlbumentationsAugmenter

        cfg = self.augment_config if self.epochs is None else self.augment_config.at_epoch(epoch, self.epochs)
        if cfg not in self._augmenters:
            self._augmenters[cfg] = AlbumentationsAugmenter(cfg, self.stats.mean)
        return self._augmenters[cfg]

    def order(self, epoch: int) -> np.ndarray:
        """The epoch's permutation of example indices, from (seed, epoch) alone."""
        cached = self._order  # read once: grain's prefetch thread and batch() may both be here
        if cached is None or cached[0] != epoch:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0, epoch]))
            cached = self._order = (epoch, rng.permutation(len(self.labels)))
        return cached[1]

    def __call__(self, global_step: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, step = divmod(int(global_step), self.steps_per_epoch)
        idx = self.order(epoch)[step * self.batch_size:(step + 1) * self.batch_size]
        images = self.images[idx]
        if self.mode == "albumentations":
            images = self.augmenter(epoch)(images, [self.seed, 1, epoch, step])
        if self.mode != "device":
            images = normalize(images, self.stats)
        return images, self.labels[idx]


class TrainLoader:
    """Shuffled, augmented training batches with grain; `epoch(e, start_step)` iterates one epoch.

    Batches are `(images, labels)`: images float32 NHWC normalised for augment "albumentations" and
    "none", raw uint8 NHWC for "device" (the jitted step augments and normalises); labels int32.
    `drop_remainder=True` drops the last partial batch of each epoch; False yields it short.
    `workers=0` computes batches in the main process (one prefetch thread); N > 0 starts N grain
    worker processes, kept alive across epochs while iteration continues where it left off.
    `epochs` (the run's length) is needed when `augment_config.fade_epochs` is set.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, batch_size: int, seed: int,
                 augment: AugmentMode = "albumentations", augment_config: AugmentConfig = AugmentConfig(),
                 stats: ChannelStats, workers: int = 0, drop_remainder: bool = True, prefetch: int = 2,
                 epochs: int | None = None):
        _check_arrays(images, labels, "TrainLoader")
        for ok, field, value, msg in [
            (batch_size >= 1, "batch_size", batch_size, "must be >= 1"),
            (seed >= 0, "seed", seed, "must be >= 0"),
            (augment in AUGMENT_MODES, "augment", augment, f"must be one of {', '.join(AUGMENT_MODES)}"),
            (workers >= 0, "workers", workers, "must be >= 0"),
            (prefetch >= 1, "prefetch", prefetch, "must be >= 1"),
            (not drop_remainder or batch_size <= len(images), "batch_size", batch_size,
             f"is larger than the {len(images)} examples, so drop_remainder leaves no batch"),
            (epochs is not None or not augment_config.fade_epochs, "epochs", epochs,
             "is needed to fade the augmentation over the last epochs (augment_config.fade_epochs)"),
        ]:
            if not ok:
                raise ConfigError(f"TrainLoader.{field}: {msg}, got {value!r}")
        n = len(images)
        self.batch_size, self.seed, self.augment, self.workers = batch_size, seed, augment, workers
        self.drop_remainder, self.prefetch = drop_remainder, prefetch
        self.num_examples = n
        self.steps_per_epoch = n // batch_size if drop_remainder else math.ceil(n / batch_size)
        self.make_batch = BatchMaker(images, labels, batch_size, seed, self.steps_per_epoch, augment,
                                     augment_config, stats, epochs)
        self._live = None       # the grain iterator, positioned at global step self._live_next
        self._live_next = -1

    def batch(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The batch at (epoch, step), computed here and now (what `epoch()` yields at that step)."""
        self._check_position(epoch, step, allow_end=False)
        return self.make_batch(epoch * self.steps_per_epoch + step)

    def epoch(self, epoch: int, start_step: int = 0) -> EpochIterator:
        """Iterator over the batches of `epoch` from `start_step` to its end."""
        self._check_position(epoch, start_step, allow_end=True)
        return EpochIterator(self, epoch, start_step)

    def resume(self, state: dict) -> EpochIterator:
        """The iterator a checkpointed `EpochIterator.get_state()` was taken from, at the same position."""
        expected = {"seed": self.seed, "batch_size": self.batch_size, "steps_per_epoch": self.steps_per_epoch}
        for key, value in expected.items():
            if state.get(key) != value:
                raise DataError(f"loader state: {key} is {state.get(key)!r} but this loader has {value!r} "
                                "(resuming would not see the same batches)")
        return self.epoch(int(state["epoch"]), int(state["step"]))

    def close(self) -> None:
        """Stop the prefetch thread / worker processes (also done when the loader is garbage-collected)."""
        if self._live is not None and hasattr(self._live, "close"):
            self._live.close()
        self._live, self._live_next = None, -1

    def __enter__(self) -> TrainLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_position(self, epoch: int, step: int, *, allow_end: bool) -> None:
        last = self.steps_per_epoch if allow_end else self.steps_per_epoch - 1
        if epoch < 0 or not 0 <= step <= last:
            raise DataError(f"loader position: epoch {epoch}, step {step} is outside epoch >= 0, "
                            f"step 0..{last}")

    def _next_batch(self, global_step: int) -> tuple[np.ndarray, np.ndarray]:
        if self._live_next != global_step:
            self.close()
            self._live = iter(self._dataset(global_step))
            self._live_next = global_step
        images, labels = next(self._live)
        self._live_next += 1
        if self.workers:  # copy out of grain's shared memory, so it is released right away
            images, labels = np.array(images), np.array(labels)
        return images, labels

    def _dataset(self, start: int):
        import grain  # imported here so that `flax_cnn.data` stays light for the torch twin

        stop = start + _HORIZON_EPOCHS * self.steps_per_epoch
        ds = grain.MapDataset.range(start, stop).map(self.make_batch)
        ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=self.prefetch))
        if self.workers:
            _mark_absl_flags_parsed()
            ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.workers,
                                                             per_worker_buffer_size=self.prefetch))
        return ds


def _mark_absl_flags_parsed() -> None:
    """grain 0.2.18's mp_prefetch reads an absl flag (worker profiling, when JAX is installed) and
    raises UnparsedFlagAccessError outside an absl app; mark the flags parsed, keeping their defaults."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class EpochIterator(Iterator):
    """One epoch's batches from a start step; `get_state()` is the JSON-able position of the next batch."""

    def __init__(self, loader: TrainLoader, epoch: int, start_step: int):
        self.loader, self.epoch, self.step = loader, epoch, start_step

    def __len__(self) -> int:
        return self.loader.steps_per_epoch - self.step

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        if self.step >= self.loader.steps_per_epoch:
            raise StopIteration
        batch = self.loader._next_batch(self.epoch * self.loader.steps_per_epoch + self.step)
        self.step += 1
        return batch

    def get_state(self) -> dict:
        """Where the next batch comes from; `TrainLoader.resume(state)` continues exactly there.

        At the end of an epoch this is (epoch, steps_per_epoch): resume then yields nothing, and
        the trainer goes on with `loader.epoch(epoch + 1)`.
        """
        lo = self.loader
        return {"seed": lo.seed, "epoch": self.epoch, "step": self.step, "batch_size": lo.batch_size,
                "steps_per_epoch": lo.steps_per_epoch}

    def set_state(self, state: dict) -> None:
        """Jump to a position from `get_state()` (of this loader, any epoch)."""
        other = self.loader.resume(state)
        self.epoch, self.step = other.epoch, other.step


class EvalLoader:
    """Fixed-order evaluation batches `(images, labels, mask)`: normalised float32 images, int32 labels.

    Every batch has `batch_size` rows; the last is padded with zero images and label 0, and `mask`
    (bool) is False on the padding, so metrics count only real examples.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, batch_size: int, stats: ChannelStats):
        _check_arrays(images, labels, "EvalLoader")
        if batch_size < 1:
            raise ConfigError(f"EvalLoader.batch_size: must be >= 1, got {batch_size}")
        self.images, self.labels = images, np.asarray(labels, dtype=np.int32)
        self.batch_size, self.stats = batch_size, stats
        self.num_examples = len(images)
        self.num_batches = math.ceil(len(images) / batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        b = self.batch_size
        for start in range(0, self.num_examples, b):
            images = normalize(self.images[start:start + b], self.stats)
            labels = self.labels[start:start + b]
            real = len(labels)
            mask = np.arange(b) < real
            if real < b:
                images = np.concatenate([images, np.zeros((b - real, *images.shape[1:]), np.float32)])
                labels = np.concatenate([labels, np.zeros(b - real, np.int32)])
            yield images, labels, mask
