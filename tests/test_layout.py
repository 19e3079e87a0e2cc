"""The package layout's promises: the documented entry points and public imports, and the import
layers (the twins never import `parity`; the framework-free modules never import JAX)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["flax_cnn.train", "flax_cnn.evaluate", "flax_cnn.predict", "flax_cnn.lr_find", "flax_cnn.data",
            "torch_ref.train", "torch_ref.evaluate", "torch_ref.predict", "torch_ref.lr_find",
            "parity", "parity.bench", "parity.compare", "parity.time_to"]


def _imports(path: Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
    return mods


def test_the_public_names_import_from_the_top_of_the_package():
    from flax_cnn import (ModelConfig, TrainConfig, build_model, receptive_field, summary,  # noqa: F401
                          train_and_evaluate)
    assert receptive_field(ModelConfig()) == 67  # README "The model"


@pytest.mark.parametrize("package", ["flax_cnn", "torch_ref"])
def test_the_twins_never_import_parity(package):
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / package).rglob("*.py")
                 if any(m == "parity" or m.startswith("parity.") for m in _imports(p))]
    assert offenders == []


def test_framework_free_modules_load_without_jax():
    # the torch twin builds from these; importing JAX there would cost seconds and memory per process
    code = ("import sys; import flax_cnn.model.config, flax_cnn.model.analysis, flax_cnn.training.config, "
            "flax_cnn.augment.config, flax_cnn.data, torch_ref.model; print('jax' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_every_documented_command_has_a_main_module():
    import importlib.util
    for name in COMMANDS:
        spec = importlib.util.find_spec(name)
        assert spec is not None, name
        if spec.submodule_search_locations:  # a package: `python -m` runs its __main__
            assert importlib.util.find_spec(f"{name}.__main__") is not None, name
