"""A checksum file per checkpoint, written last and verified before a restore, so a truncated or
altered file is found before any of it is used.

`checksums.json` lists every other file under the checkpoint directory with its size and SHA-256.
Both twins use it: the JAX trainer after orbax finalises a step, the torch twin inside its
temporary directory before the rename.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

NAME = "checksums.json"


class Damaged(Exception):
    """The checkpoint cannot be trusted; the message says which file and how."""


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != NAME and not p.name.endswith(".tmp"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write(root: Path) -> None:
    """Record every file under `root`; the record is made durable before it appears (tmp, fsync, rename)."""
    record = {p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in _files(root)}
    tmp = root / (NAME + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"files": record}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(root / NAME)


def verify(root: Path) -> bool:
    """True if every recorded file checks out; False if there is no record (a checkpoint written
    before checksums were, or cut short between the data and the record); `Damaged` naming the
    first file that is missing, of the wrong size or of the wrong checksum."""
    path = root / NAME
    if not path.is_file():
        return False
    try:
        record = json.loads(path.read_text())["files"]
        items = [(name, int(v["size"]), str(v["sha256"])) for name, v in record.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise Damaged(f"{NAME} is unreadable ({type(e).__name__})") from None
    for name, size, digest in items:
        f = root / name
        if not f.is_file():
            raise Damaged(f"{name} is missing")
        got = f.stat().st_size
        if got != size:
            raise Damaged(f"{name} is {got} byte{'' if got == 1 else 's'}, {size} were written")
        if _sha256(f) != digest:
            raise Damaged(f"{name} does not match its checksum")
    return True
