"""The official binary archive, downloaded once into a cache directory and checked by MD5."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from flax_cnn.data.errors import DataError

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
OFFICIAL_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """$FLAX_CNN_CACHE, else ~/.cache/flax_cnn."""
    env = os.environ.get("FLAX_CNN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "flax_cnn"


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fetch_archive(url: str = OFFICIAL_URL, md5: str = OFFICIAL_MD5, cache_dir: Path | None = None,
                  timeout_s: float = 60.0) -> Path:
    """Path of the cached archive; downloads it first if it is absent or its MD5 does not match.

    The download goes to a temporary file in the cache dir and is renamed into place only after
    its checksum matched, so a failed or concurrent download never leaves a bad archive behind.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / Path(urllib.parse.urlparse(url).path).name
    if not target.name:
        raise DataError(f"{url}: the URL does not end in a file name")
    if target.is_file() and file_md5(target) == md5:
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{cache_dir}: cannot create the cache directory ({e.strerror})") from None
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=target.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            while chunk := response.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != md5:
            raise DataError(f"{url}: downloaded file has MD5 {h.hexdigest()}, expected {md5} (corrupt or "
                            "changed upstream; nothing was cached)")
        os.replace(tmp, target)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DataError(f"{url}: download failed ({reason}); without network, pass --data-dir with the "
                        "official CIFAR-10 files") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
