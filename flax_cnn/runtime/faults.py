"""The faults a long run meets with its files, as one-line errors the CLIs print without a traceback.

`FileError`: a file a command reads is missing, truncated or not what it should be (exit 2, like
bad data). `DiskFull`: the disk filled while the run wrote (exit 1, "stopped"; what was written
before is intact and `--resume` continues once there is space again).
"""

from __future__ import annotations

import errno
import logging
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from flax_cnn.data.errors import DataError


class FileError(DataError):
    """A file (or run directory) a command was given cannot be used; the message names it and says why."""


class DiskFull(RuntimeError):
    """No space left while writing; the message names what was being written and what is still intact."""


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How writers that are not Python's say it: tensorstore (orbax) and safetensors (Rust).
_FULL_TEXTS = ("no space left on device", "disk quota exceeded", "os_error_code='28'", "os error 28")


def is_disk_full(exc: BaseException | None) -> bool:
    """True if `exc` (or an exception it was raised from) is a full disk or an exceeded quota."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if any(t in str(exc).lower() for t in _FULL_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def one_line(exc: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, short enough for a one-line error. A bare `Exception`
    wrapping another (orbax's around tensorstore's) gives way to the error it wraps."""
    while type(exc) is Exception and (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__
    text = next((s.strip() for s in str(exc).splitlines() if s.strip()), "")
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


@contextmanager
def writing(path: Path, *, partial: Path | None = None):
    """Within: a full disk becomes DiskFull naming `path` (the `partial` file is removed first)."""
    try:
        yield
    except Exception as e:
        if not is_disk_full(e):
            raise
        if partial is not None:
            partial.unlink(missing_ok=True)
        raise DiskFull(f"no space left on device while writing {path}; what was written before it is intact. "
                       "Free some space, then run again with --resume") from None


def disk_full_message(step: int, root: Path, kept: list[int]) -> str:
    """What a checkpoint save met by a full disk says: what is lost, what is intact, what to do."""
    intact = f"checkpoint {max(kept)} is intact" if kept else "there is no earlier checkpoint"
    return (f"no space left on device while writing checkpoint {step} to {root}: it was not kept (its "
            f"partial files are not used and are removed when the run starts again), {intact}. "
            "Free some space, then run again with --resume")


def disk_full_line(exc: BaseException) -> str:
    """The one line for a full disk met outside `writing` (plots, weights exports)."""
    where = f" while writing {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
    return (f"no space left on device{where} ({one_line(exc)}); the checkpoints written before are intact. "
            "Free some space, then run again with --resume")


class _DropDiskFullRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (is_disk_full(exc) or any(t in record.getMessage().lower() for t in _FULL_TEXTS))


def quiet_disk_full_logs(*loggers: str) -> None:
    """Drop these loggers' records of a full disk: orbax's threads and asyncio's orphaned tasks
    log every write that failed, in tracebacks; DiskFull's one line says it once."""
    for name in loggers:
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropDiskFullRecords) for f in log.filters):
            log.addFilter(_DropDiskFullRecords())


def quiet_closed_loop_callbacks() -> None:
    """When a save fails, tensorstore's writes still in flight complete into orbax's closed event
    loop, and each prints a 'RuntimeError: Event loop is closed' traceback from tensorstore's
    threads. Those, and only those (not from the main thread), are dropped."""
    if getattr(sys.excepthook, "_drops_closed_loop", False):
        return
    previous_excepthook, previous_unraisable = sys.excepthook, sys.unraisablehook

    def closed_loop(exc) -> bool:
        return (isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"
                and threading.current_thread() is not threading.main_thread())

    def excepthook(kind, value, tb):
        if not closed_loop(value):
            previous_excepthook(kind, value, tb)

    def unraisablehook(unraisable):
        if not closed_loop(unraisable.exc_value):
            previous_unraisable(unraisable)

    excepthook._drops_closed_loop = True
    sys.excepthook, sys.unraisablehook = excepthook, unraisablehook
