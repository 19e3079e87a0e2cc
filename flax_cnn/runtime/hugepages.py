"""Run the command-line tools with glibc's malloc backing large allocations by transparent huge pages.

Why: XLA:CPU allocates a jitted step's temporary buffers afresh for every execution (362 MiB for
the default train step at batch 128) and glibc's malloc maps large blocks with mmap and unmaps
them on free, so each step page-faults all of it in again 4 KiB at a time: ~93,000 faults and
~250 ms of kernel time per step on a 2-core machine (README "Performance"). With
`GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc ≥ 2.35) malloc asks for transparent huge pages on
those mappings: ~750 faults per step, most of them 2 MiB. glibc reads tunables only when a process starts,
so the CLIs re-execute themselves once with the tunable added; `FLAX_CNN_HUGEPAGES=0` opts out.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "FLAX_CNN_HUGEPAGES"
_THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _glibc_version() -> tuple[int, int] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # "glibc 2.36"; absent on musl, macOS
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (AttributeError, OSError, ValueError):
        return None


def thp_mode() -> str | None:
    """The kernel's transparent-huge-page mode (`always`, `madvise`, `never`), None if unknown."""
    try:
        text = _THP.read_text()
    except OSError:
        return None
    return text[text.index("[") + 1:text.index("]")] if "[" in text else None


def wanted(environ: dict[str, str] | None = None) -> bool:
    """Whether a re-exec would add the tunable: Linux, glibc ≥ 2.35, THP not off, not yet set, no opt-out."""
    env = os.environ if environ is None else environ
    if sys.platform != "linux" or env.get(OPT_OUT, "1") == "0":
        return False
    if "glibc.malloc.hugetlb" in env.get("GLIBC_TUNABLES", ""):
        return False
    version = _glibc_version()
    return version is not None and version >= (2, 35) and thp_mode() in ("always", "madvise")


def tuned_environ(environ: dict[str, str]) -> dict[str, str]:
    """`environ` with the tunable appended to any GLIBC_TUNABLES already there."""
    tunables = ":".join(t for t in (environ.get("GLIBC_TUNABLES", ""), TUNABLE) if t)
    return {**environ, "GLIBC_TUNABLES": tunables}


def reexec() -> None:
    """Replace this process by the same command with the tunable set (returns if not `wanted`).

    Call it first thing under `if __name__ == "__main__":`, before jax or torch is imported.
    """
    if not wanted():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], tuned_environ(dict(os.environ)))


def describe() -> dict[str, str | None]:
    """The allocator settings this process runs under, as the benchmark records them."""
    return {"glibc_tunables": os.environ.get("GLIBC_TUNABLES"), "transparent_hugepage": thp_mode()}
