"""The command line both trainers share: flags from TrainConfig, one-line errors, exit codes.

Exit codes: 0 done, 1 training stopped (non-finite loss, a full disk, a lost peer process), 2 bad
flags or an unusable file (data, weights, config, a damaged checkpoint with no intact one).
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import tyro

from flax_cnn.augment.config import deferred_validation
from flax_cnn.model.config import ConfigError
from flax_cnn.training.config import TrainConfig, validate


def parse(argv: list[str] | None, prog: str, description: str) -> TrainConfig:
    """TrainConfig from flags; its AugmentConfig is checked by `validate`, so a bad --aug.* flag
    gets the same one line as any other."""
    with deferred_validation():
        return tyro.cli(TrainConfig, args=argv, prog=prog, description=description)


def run_main(train: Callable[[TrainConfig], dict], argv: list[str] | None, *, prog: str, description: str,
             before: Callable[[TrainConfig], None] | None = None) -> int:
    """Parse, validate, run `train(cfg)`; turn expected failures into one line on stderr."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from flax_cnn.data.errors import DataError
    from flax_cnn.runtime.faults import DiskFull, disk_full_line, is_disk_full
    from flax_cnn.training.errors import TrainingError

    cfg = parse(argv, prog, description)
    try:
        validate(cfg)
        if before is not None:
            before(cfg)
        train(cfg)
    except (ConfigError, DataError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except (TrainingError, DiskFull) as e:
        print(f"{prog}: stopped: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from flax_cnn.runtime import peers

        peers.stop_on_peer_failure(e, prog)  # multi-process: a peer died; one line, exit 1
        if is_disk_full(e):
            print(f"{prog}: stopped: {disk_full_line(e)}", file=sys.stderr)
            return 1
        raise
    return 0
