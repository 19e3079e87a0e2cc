"""A trainer CLI whose checkpoint writer stops inside one save, so a test can SIGKILL it there.

    python -m tests.fault_child POINT STEP MARKER MODULE [TRAINER ARGS...]

When the save of checkpoint STEP reaches POINT, MARKER is created and the process sleeps until
killed. POINT is one of
  orbax      (JAX) every file of the step is in orbax's temporary directory, not yet renamed;
  checksums  (JAX) orbax has renamed the step into place, checksums.json is not written yet;
  torch      (torch) model.safetensors is in the temporary directory, the other files are not.
Only tests run this; the trainers carry no hook for it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def _pause(marker: Path) -> None:
    marker.write_text("in the save\n")
    while True:
        time.sleep(60)


def _patch(point: str, step: int, marker: Path) -> None:
    if point == "orbax":
        from orbax.checkpoint._src.path import atomicity

        real = atomicity.AtomicRenameTemporaryPath.finalize

        async def finalize(self):
            if self.get_final().name == str(step) and self.get_final().parent.name == "checkpoints":
                _pause(marker)
            return await real(self)

        atomicity.AtomicRenameTemporaryPath.finalize = finalize
    elif point == "checksums":
        from flax_cnn.checkpoints import checksums

        real_write = checksums.write

        def write(root):
            if root.name == str(step) and root.parent.name == "checkpoints":
                _pause(marker)
            real_write(root)

        checksums.write = write
    elif point == "torch":
        from torch_ref import checkpoint

        real_save = checkpoint.save_file

        def save_file(tensors, path, *a, **k):
            real_save(tensors, path, *a, **k)
            p = Path(path)
            if p.name == "model.safetensors" and p.parent == p.parent.parent.parent / "checkpoints" / f"{step}.tmp":
                _pause(marker)

        checkpoint.save_file = save_file
    else:
        raise SystemExit(f"unknown point {point!r}")


def main() -> int:
    point, step, marker, module, *args = sys.argv[1:]
    _patch(point, int(step), Path(marker))
    if module == "flax_cnn.train":
        from flax_cnn.train import main as train_main
    else:
        from torch_ref.train import main as train_main
    return train_main(args)


if __name__ == "__main__":
    sys.exit(main())
