"""`python -m torch_ref.train`: the same experiment, flag for flag, in PyTorch (see `--help`)."""

from __future__ import annotations

import sys

from flax_cnn.runtime import hugepages
from flax_cnn.training.cli import run_main
from flax_cnn.training.config import TrainConfig


def _train(cfg: TrainConfig) -> dict:
    from torch_ref.trainer import train_and_evaluate

    return train_and_evaluate(cfg)


def main(argv: list[str] | None = None) -> int:
    return run_main(_train, argv, prog="python -m torch_ref.train",
                    description="Train the compact CIFAR-10 CNN's PyTorch twin (same flags as flax_cnn.train).")


if __name__ == "__main__":
    hugepages.reexec()
    sys.exit(main())
