"""`python -m parity.device_info [OUT.json]`: what JAX and torch see (backend, devices, versions, TF32 settings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def describe() -> dict:
    import jax
    import torch

    from parity import peaks

    info = {"jax": jax.__version__, "jax_backend": jax.default_backend(),
            "jax_devices": [f"{d} ({d.device_kind})" for d in jax.devices()],
            "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
            "torch": torch.__version__, "torch_cuda": torch.version.cuda, "torch_cuda_available": torch.cuda.is_available(),
            "cpu_isa": peaks.cpu_isa(), "cpu_count": os.cpu_count(),
            "env": {k: os.environ[k] for k in ("NVIDIA_TF32_OVERRIDE", "JAX_DEFAULT_MATMUL_PRECISION", "XLA_FLAGS",
                                               "XLA_PYTHON_CLIENT_MEM_FRACTION", "FLAX_CNN_OPS") if k in os.environ}}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(torch_device=torch.cuda.get_device_name(0), torch_device_count=torch.cuda.device_count(),
                    torch_device_memory_gib=round(p.total_memory / 2**30, 1), torch_capability=f"{p.major}.{p.minor}",
                    torch_allow_tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                    torch_allow_tf32_cudnn=torch.backends.cudnn.allow_tf32)
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        if smi.returncode == 0:
            info["nvidia_smi"] = smi.stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    info = describe()
    text = json.dumps(info, indent=2)
    print(text)
    if argv:
        Path(argv[0]).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
