"""The CLIs' re-exec with glibc's huge-page malloc: the environment it builds, and that it takes effect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flax_cnn.runtime import hugepages

REPO = Path(__file__).resolve().parents[1]

# Fresh-mapped memory is what XLA:CPU's per-execution temp buffers are: malloc a block far above
# glibc's mmap threshold, touch every page, free it, twice, and count the minor page faults. (Plain
# libc malloc: numpy already madvises its own large arrays for huge pages.)
PROBE = """
import ctypes, json, os, resource, sys
from flax_cnn.runtime import hugepages
hugepages.reexec()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    block = libc.malloc(64 * 2**20)  # mapped fresh by malloc and unmapped by free
    ctypes.memset(block, 1, 64 * 2**20)
    libc.free(block)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({"tunables": os.environ.get("GLIBC_TUNABLES"), "faults": faults, "args": sys.argv[1:]}))
"""


def _base_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", hugepages.OPT_OUT)}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def test_tuned_environ_appends_to_existing_tunables():
    assert hugepages.tuned_environ({})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    env = hugepages.tuned_environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "X": "1"})
    assert env == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1", "X": "1"}


def test_no_reexec_when_set_already_or_opted_out():
    assert not hugepages.wanted({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})
    assert not hugepages.wanted({hugepages.OPT_OUT: "0"})


def _probe(tmp_path, env) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    proc = subprocess.run([sys.executable, str(script), "a", "b c"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(not hugepages.wanted(_base_env()), reason="needs Linux, glibc >= 2.35 and transparent huge pages")
def test_reexec_keeps_arguments_and_cuts_page_faults_of_large_blocks(tmp_path):
    tuned = _probe(tmp_path, _base_env())
    assert tuned["tunables"] == hugepages.TUNABLE and tuned["args"] == ["a", "b c"]
    base = _probe(tmp_path, _base_env(**{hugepages.OPT_OUT: "0"}))
    assert base["tunables"] is None and base["args"] == ["a", "b c"]
    # 2 × 64 MiB in 4 KiB pages is 32,768 faults; in 2 MiB pages 64. Allow the kernel to fall back
    # to small pages for part of it (fragmented memory) and for the interpreter's own startup faults.
    assert base["faults"] > 30_000 and tuned["faults"] < base["faults"] / 8
