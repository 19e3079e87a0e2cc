"""The emitted model.py stands alone: in a process where `import torch` (and `parity`, `flax_cnn`) fails,
it imports, loads model.safetensors, and reproduces the torch output; its weights round-trip into
the original torch module (`load_state_dict(strict=True)`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from parity.port import port
from tests.zoo import MODERN

# Blocks the packages the emitted file must not need, then runs it on x.npy in eval mode.
CHILD = textwrap.dedent("""
    import importlib.abc, importlib.util, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("torch", "parity", "flax_cnn", "tests"):
                raise ImportError(f"{name} is blocked: the emitted model must not need it")
    sys.meta_path.insert(0, Block())
    sys.path = [p for p in sys.path if p not in ("", ".")]
    try:
        import torch  # noqa: F401
        raise SystemExit("torch imported")
    except ImportError:
        pass
    import numpy as np
    folder = sys.argv[1]
    spec = importlib.util.spec_from_file_location("model", folder + "/model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.load()
    model.eval()
    np.save(folder + "/y.npy", np.asarray(model(np.load(folder + "/x.npy"))))
    mod.save(model, folder + "/saved.safetensors")
""")


@pytest.mark.parametrize("name", ["unet_bilinear", "convnext", "espcn"])
def test_model_py_runs_without_torch_and_reproduces_torch(name, tmp_path):
    torch.manual_seed(0)
    model = MODERN[name]().eval()
    x = torch.randn(2, 3, 32, 32)
    port(model, x, out_dir=tmp_path)
    np.save(tmp_path / "x.npy", x.numpy().transpose(0, 2, 3, 1))
    run = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    with torch.no_grad():
        expected = model(x).numpy()
    got = np.load(tmp_path / "y.npy")
    if expected.ndim == 4:
        expected = expected.transpose(0, 2, 3, 1)  # compare in the Flax layout
    # float32 through ~20 layers: both frameworks are within ~1e-6 of exact on these nets (the --check
    # reports' torch float32 error); 1e-4 relative to the output's scale is far below any port bug.
    assert np.max(np.abs(got - expected)) <= 1e-4 * max(1.0, float(np.max(np.abs(expected))))
    back = MODERN[name]()
    back.load_state_dict({k: torch.from_numpy(v) for k, v in load_file(tmp_path / "saved.safetensors").items()},
                         strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
