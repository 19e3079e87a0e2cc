"""The emitted model.py stands alone: in a process where `import torch` (and `parity`, `flax_cnn`) fails,
it imports, loads model.safetensors, and reproduces the torch output, every zoo model in one child
process; its weights round-trip into the original torch module (`load_state_dict(strict=True)`)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from parity.port import port
from parity.suite.twins import output_leaves, torch_output_leaves
from tests.zoo import MODERN, ZOO
from tests.zoo.centernet import centernet

# Blocks the packages the emitted file must not need, then runs each folder's model.py on x.npy in eval
# mode: its output (any structure) pickled as numpy, its weights saved back in torch naming.
CHILD = textwrap.dedent("""
    import importlib.abc, importlib.util, pickle, sys
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
    import jax
    import numpy as np
    for folder in sys.argv[1:]:
        spec = importlib.util.spec_from_file_location("model", folder + "/model.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        model = mod.load()
        model.eval()
        out = jax.tree.map(np.asarray, model(np.load(folder + "/x.npy")))
        with open(folder + "/y.pkl", "wb") as f:
            pickle.dump(out, f)
        mod.save(model, folder + "/saved.safetensors")
""")

MODELS = {**ZOO, **MODERN, "centernet": centernet}
QUICK = ("unet_bilinear", "convnext", "espcn", "centernet")  # a dense output, layer scale, a larger output, a dict


@pytest.mark.parametrize("names", [pytest.param(QUICK, id="quick"),
                                   pytest.param(tuple(MODELS), id="all", marks=pytest.mark.extended)])
def test_model_py_runs_without_torch_and_reproduces_torch(names, tmp_path):
    """Zoo models (all 26 in make test-extended: classic, modern, CenterNet's dict of heads), in one
    torch-less process: porting all of them takes ~2 minutes, too long for make test."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    folders = []
    for name in names:
        build = MODELS[name]
        torch.manual_seed(0)
        folder = tmp_path / name
        port(build(), torch.randn(2, 3, 32, 32), out_dir=folder)
        np.save(folder / "x.npy", x.numpy().transpose(0, 2, 3, 1))
        folders.append(str(folder))
    run = subprocess.run([sys.executable, "-c", CHILD, *folders], capture_output=True, text=True, cwd=tmp_path,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    for name in names:
        folder = tmp_path / name
        model = MODELS[name]()  # the weights model.py loaded, into a fresh module: the state_dict round trip too
        model.load_state_dict({k: torch.from_numpy(v) for k, v in load_file(folder / "model.safetensors").items()},
                              strict=True)
        with torch.no_grad():
            expected = torch_output_leaves(model.eval()(x))
        got = output_leaves(pickle.loads((folder / "y.pkl").read_bytes()))
        assert got.keys() == expected.keys(), name
        for path, e in expected.items():
            # float32 through ~20-50 layers: both frameworks are within ~1e-6 of exact on these nets (the
            # --check reports' torch float32 error); 1e-4 relative to the output's scale is far below any port bug.
            assert got[path].shape == e.shape, (name, path)
            assert np.max(np.abs(got[path] - e)) <= 1e-4 * max(1.0, float(np.max(np.abs(e)))), (name, path)
        saved = load_file(folder / "saved.safetensors")
        assert saved.keys() == model.state_dict().keys(), name
        for k, v in model.state_dict().items():
            assert np.array_equal(saved[k], v.numpy()), (name, k)
