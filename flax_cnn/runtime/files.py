"""Read the files a command is given (JSON, safetensors): every way one can be wrong — missing, a
directory, unreadable, truncated, not the format — becomes one `FileError` naming the file."""

from __future__ import annotations

import json
from pathlib import Path

from flax_cnn.runtime.faults import FileError, one_line


def _label(path: Path, what: str) -> str:
    return f"{what} {path}" if what else str(path)


def _check_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise FileError(f"{_label(path, what)}: is a directory, not a file")
    if not path.exists():
        raise FileError(f"{_label(path, what)}: no such file")


def read_json(path: str | Path, *, what: str = "") -> dict:
    """The JSON object in `path`; `what` (e.g. '--model') prefixes the message."""
    p = Path(path)
    _check_file(p, what)
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except OSError as e:
        raise FileError(f"{_label(p, what)}: cannot be read ({e.strerror or one_line(e)})") from None
    except UnicodeDecodeError:
        raise FileError(f"{_label(p, what)}: not JSON (not UTF-8 text; damaged?)") from None
    except json.JSONDecodeError as e:
        raise FileError(f"{_label(p, what)}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}; "
                        "truncated or damaged?)") from None
    if not isinstance(data, dict):
        raise FileError(f"{_label(p, what)}: expected a JSON object, found a {type(data).__name__}")
    return data


def read_safetensors(path: str | Path, *, what: str = "", framework: str = "numpy") -> dict:
    """All tensors of the safetensors file `path`, as numpy arrays or (framework='pt') torch tensors."""
    p = Path(path)
    _check_file(p, what)
    if framework == "pt":
        from safetensors.torch import load_file
    else:
        from safetensors.numpy import load_file
    try:
        return load_file(str(p))
    except Exception as e:  # SafetensorError (truncated, bad header), OSError, a dtype numpy lacks
        raise FileError(f"{_label(p, what)}: not a readable safetensors file ({one_line(e)}; truncated or "
                        "damaged?)") from None
