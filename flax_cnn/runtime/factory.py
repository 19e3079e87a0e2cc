"""`pkg.module:factory` → the callable it names; framework-free (importlib only).

One loader for every command that takes a model factory: `python -m parity port --module`,
`python -m torch_ref.train --torch-model`, `python -m parity.bench --torch-model`. It imports the
user's module and nothing else, so the twins can use it without importing `parity`.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path


def load_factory(spec: str, *, flag: str = "--module"):
    """The callable named by `pkg.module:factory` (ValueError naming `flag` and what is wrong)."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise ValueError(f"{flag} {spec!r}: expected pkg.module:factory")
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as e:
        raise ValueError(f"{flag} {spec!r}: cannot import {mod_name} ({e})") from e
    except Exception as e:  # the file is there but broken: a syntax error, null bytes, an error it raises
        where = f" in {e.filename}, line {e.lineno}" if isinstance(e, SyntaxError) and e.filename else ""
        raise ValueError(f"{flag} {spec!r}: importing {mod_name} failed{where} "
                         f"({type(e).__name__}: {first_line(e)})") from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{flag} {spec!r}: {mod_name} has no attribute {attr}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{flag} {spec!r}: {attr} is not callable")
    return obj


def factory_source(spec: str) -> Path | None:
    """The source file of the module `spec` names, found without executing it (None if it has none).

    A dotted name imports its parent packages (as `import` would), not the module itself."""
    mod_name = spec.partition(":")[0]
    try:
        found = importlib.util.find_spec(mod_name)
    except (ImportError, ValueError):
        return None
    if found is None or not found.origin or not Path(found.origin).is_file():
        return None
    return Path(found.origin)


def first_line(e: BaseException) -> str:
    return next((s.strip() for s in str(e).splitlines() if s.strip()), "")[:200]
