"""Runs that several families would repeat, computed once: inside `shared_runs()` a function's result is
kept under its key (the forward and layers families run each twin in the same mode, dtype and batch)."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from typing import Callable, Iterator

import numpy as np

_CACHE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("parity_shared_runs", default=None)


@contextlib.contextmanager
def shared_runs() -> Iterator[None]:
    """Keep `memo` results until the block ends (then they are freed: a full-size net's recorded layers
    take gigabytes)."""
    token = _CACHE.set({})
    try:
        yield
    finally:
        _CACHE.reset(token)


def memo(key: tuple, compute: Callable):
    """`compute()`, or inside `shared_runs` the result kept under `key` (ids in keys are of objects that
    live as long as the block)."""
    cache = _CACHE.get()
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def digest(x: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(x).tobytes() + str((x.dtype, x.shape)).encode()).hexdigest()
