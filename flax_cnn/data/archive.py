"""Members of the official `.tar.gz` archives, read in one sequential pass without extracting."""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

from flax_cnn.data.errors import DataError

# Top directory inside each official archive → the layout its files are in.
ARCHIVE_DIRS = {"cifar-10-batches-bin": "binary", "cifar-10-batches-py": "python"}


def read_members(path: Path, wanted: set[str]) -> tuple[str, dict[str, bytes]]:
    """(layout, {file name: bytes}) for the files named in `wanted` under the archive's top dir.

    Only regular files directly under `cifar-10-batches-bin/` or `cifar-10-batches-py/` are read;
    nothing is written to disk, so member paths cannot escape anywhere.
    """
    found: dict[str, bytes] = {}
    top: str | None = None
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for member in tar:
                parts = member.name.lstrip("./").split("/")
                if len(parts) != 2 or parts[0] not in ARCHIVE_DIRS or not member.isfile():
                    continue
                if top is not None and parts[0] != top:
                    raise DataError(f"{path}: holds both {top}/ and {parts[0]}/; expected one official layout")
                top = parts[0]
                if parts[1] in wanted:
                    f = tar.extractfile(member)
                    found[parts[1]] = f.read() if f is not None else b""
    except tarfile.ReadError:
        raise DataError(f"{path}: not a readable tar archive (not .tar, .tar.gz, .tar.bz2 or .tar.xz, or corrupt)") \
            from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: not a readable tar archive (truncated or corrupt: {detail})") from None
    if top is None:
        raise DataError(f"{path}: no cifar-10-batches-bin/ or cifar-10-batches-py/ directory in the archive "
                        "(expected an official CIFAR-10 archive)")
    return ARCHIVE_DIRS[top], found
