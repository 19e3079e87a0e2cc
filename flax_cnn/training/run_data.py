"""The data of one run, assembled from a TrainConfig: loaders for both trainers plus report inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flax_cnn.model.config import ConfigError
from flax_cnn.data.cifar10 import Cifar10
from flax_cnn.data.pipeline import EvalLoader, TrainLoader
from flax_cnn.data.sources import load_cifar10
from flax_cnn.data.stats import ChannelStats, channel_stats
from flax_cnn.training.config import TrainConfig


@dataclass
class RunData:
    """Everything the loop reads: the train loader, test batches, and what the report needs."""

    train: TrainLoader
    test: Cifar10
    stats: ChannelStats
    eval_batch_size: int

    @property
    def n_train(self) -> int:
        return self.train.num_examples

    @property
    def class_names(self) -> list[str]:
        return list(self.test.class_names)

    @property
    def test_images(self) -> np.ndarray:
        return self.test.images

    @property
    def test_labels(self) -> np.ndarray:
        return self.test.labels

    def test_batches(self) -> EvalLoader:
        return EvalLoader(self.test.images, self.test.labels, batch_size=self.eval_batch_size, stats=self.stats)


def prepare(cfg: TrainConfig) -> RunData:
    """Load both splits, compute the train split's channel statistics, build the loaders."""
    train = load_cifar10(cfg.data_dir, "train", limit=cfg.train_examples)
    test = load_cifar10(cfg.data_dir, "test", limit=cfg.test_examples)
    if cfg.batch_size > len(train):
        raise ConfigError(f"--batch-size: {cfg.batch_size} is larger than the {len(train)} training examples")
    stats = channel_stats(train.images)
    loader = TrainLoader(train.images, train.labels, batch_size=cfg.batch_size, seed=cfg.seed, augment=cfg.augment,
                         augment_config=cfg.aug, stats=stats, workers=cfg.workers, drop_remainder=True,
                         epochs=cfg.epochs)
    return RunData(loader, test, stats, cfg.eval_batch_size)
