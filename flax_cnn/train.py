"""`python -m flax_cnn.train`: train the compact CIFAR-10 CNN in JAX (see `--help`)."""

from __future__ import annotations

import sys

from flax_cnn.runtime import hugepages
from flax_cnn.training.cli import run_main
from flax_cnn.training.config import TrainConfig


def _configure_devices(cfg: TrainConfig) -> None:
    from flax_cnn.runtime import devices

    devices.configure(cpu_devices=cfg.cpu_devices, coordinator=cfg.coordinator,
                      num_processes=cfg.num_processes, process_id=cfg.process_id)


def _train(cfg: TrainConfig) -> dict:
    from flax_cnn.training.trainer import train_and_evaluate

    return train_and_evaluate(cfg)


def main(argv: list[str] | None = None) -> int:
    return run_main(_train, argv, prog="python -m flax_cnn.train", before=_configure_devices,
                    description="Train the compact CIFAR-10 CNN in JAX/Flax NNX (jit, data-parallel over all devices).")


if __name__ == "__main__":
    hugepages.reexec()
    sys.exit(main())
