"""What the machine can do: the CPU's vector ISA, and each framework's matmul peak per precision.

A benchmark row's `fraction_of_peak` divides its achieved FLOP/s by the peak of its own framework
and precision, measured in the same run (a square matmul, 2048³ on CPU, 8192³ on GPU), so a row is
judged against what that framework's GEMM reaches on this machine, not against a datasheet.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Callable

import numpy as np

CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The first CPU's feature flags (x86 `flags`, Arm `Features`); empty if unreadable."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.split(":")[0].strip() in ("flags", "Features"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_isa(flags: set[str] | None = None) -> str:
    """The widest vector/matrix ISA the frameworks' CPU kernels can use, e.g. "AVX-512 (+bf16)"."""
    flags = cpu_flags() if flags is None else flags
    if {"amx_bf16", "amx_tile"} & flags:
        return "AVX-512 + AMX-bf16" if "amx_bf16" in flags else "AVX-512 + AMX"
    if "avx512f" in flags:
        return "AVX-512 (+bf16)" if "avx512_bf16" in flags else "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    if "sve" in flags:
        return "SVE" + (" (+bf16)" if "bf16" in flags else "")
    if "asimd" in flags:
        return "NEON" + (" (+bf16)" if "bf16" in flags else "")
    return "AVX" if "avx" in flags else platform.machine() or "unknown"


def default_size(on_gpu: bool) -> int:
    """Large enough to reach the GEMM's plateau, small enough to run in ~0.1-1 s per call."""
    return 8192 if on_gpu else 2048


def matmul(library: str, precision: str, n: int, *, seed: int = 0) -> tuple[Callable[[], None], Callable[[], None]]:
    """(one n×n @ n×n product, device sync) in `library` ("jax" or "torch") at `precision` ("fp32" or "bf16").

    JAX's product is jitted with the framework's default compiler options (its best GEMM), on the
    first device; torch's runs on CUDA when present, else on the CPU's intra-op threads.
    """
    a, b = (np.random.default_rng(seed + i).standard_normal((n, n)).astype(np.float32) for i in range(2))
    if library == "jax":
        import jax
        import jax.numpy as jnp

        dt = jnp.bfloat16 if precision == "bf16" else jnp.float32
        x, y = (jax.device_put(jnp.asarray(v, dt), jax.devices()[0]) for v in (a, b))
        f = jax.jit(lambda p, q: p @ q)
        box = {}

        def one():
            box["out"] = f(x, y)

        return one, lambda: jax.block_until_ready(box.get("out"))
    if library == "torch":
        import torch

        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dt = torch.bfloat16 if precision == "bf16" else torch.float32
        x, y = (torch.from_numpy(v).to(dev, dt) for v in (a, b))
        return (lambda: torch.mm(x, y)), (torch.cuda.synchronize if dev.type == "cuda" else (lambda: None))
    raise ValueError(f"unknown library {library!r} (jax, torch)")


def gflops(n: int, seconds: float) -> float:
    return 2 * n**3 / seconds / 1e9
