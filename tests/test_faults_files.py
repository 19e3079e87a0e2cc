"""Every file a command reads, damaged: one line naming the file and what is wrong, exit 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flax_cnn.model.config import ModelConfig
from tests.faults_util import PROG, cli_args, copy_run, train_cli, truncate

SAFETENSORS_TRUNCATED = ": not a readable safetensors file (SafetensorError: Error while deserializing header: "


def _one_error_line(err: str, prog: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    return lines[0][len(f"{prog}: error: "):]


@pytest.fixture
def run(uninterrupted, tmp_path):
    """A copy of a finished JAX run directory, to damage."""
    return copy_run(uninterrupted[1], tmp_path / "run")


def test_evaluate_a_run_with_truncated_weights(run):
    """The case of the issue, as a new user meets it: the real command in a fresh process."""
    truncate(run / "model.safetensors", 20)
    r = subprocess.run([sys.executable, "-m", "flax_cnn.evaluate", "--checkpoint", str(run)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    msg = _one_error_line(r.stderr, "python -m flax_cnn.evaluate")
    assert msg.startswith(f"{run / 'model.safetensors'}{SAFETENSORS_TRUNCATED}") and msg.endswith(
        "; truncated or damaged?)"), msg


def _damage(run, what: str) -> str:
    """Damage one file of `run`; returns what the error line must start with (after 'error: ')."""
    if what == "weights truncated":
        truncate(run / "model.safetensors", 20)
        return f"{run / 'model.safetensors'}{SAFETENSORS_TRUNCATED}"
    if what == "weights of another model":
        import torch_ref
        from torch_ref.weights import save_weights
        save_weights(torch_ref.build_model(ModelConfig()), run / "model.safetensors")
        return (f"{run / 'model.safetensors'}: these weights do not fit the model (shape mismatch at "
                "features.c1.0.conv.weight: source has (32, 3, 3, 3), target expects (8, 3, 3, 3))")
    if what == "weights missing":
        (run / "model.safetensors").unlink()
        return f"--checkpoint {run}: no model.safetensors (has the run finished an epoch?)"
    if what == "config.json truncated":
        truncate(run / "config.json", 40)
        return f"--checkpoint {run / 'config.json'}: not valid JSON ("
    if what == "config.json not a config":
        (run / "config.json").write_text(json.dumps({"model_config": {"blocks": 3}}))
        return f"--checkpoint {run / 'config.json'}: not a run's configuration ("
    if what == "data.json a list":
        (run / "data.json").write_text("[]")
        return f"--checkpoint {run / 'data.json'}: expected a JSON object, found a list"
    if what == "data.json binary":
        (run / "data.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
        return f"--checkpoint {run / 'data.json'}: not JSON (not UTF-8 text; damaged?)"
    raise AssertionError(what)


RUN_DIR_FAULTS = ["weights truncated", "weights of another model", "weights missing", "config.json truncated",
                  "config.json not a config", "data.json a list", "data.json binary"]


@pytest.mark.parametrize("what", RUN_DIR_FAULTS)
@pytest.mark.parametrize("command", ["flax_cnn.evaluate", "torch_ref.evaluate", "flax_cnn.predict", "parity"])
def test_a_damaged_run_directory(command, what, run, capsys):
    import importlib

    expected = _damage(run, what)
    if command == "parity":
        from parity.suite.cli import main
        argv, prog = ["--checkpoint", str(run), "--families", "forward"], "python -m parity"
    else:
        main = importlib.import_module(command).main
        argv, prog = ["--checkpoint", str(run)], f"python -m {command}"
        if command.endswith("predict"):
            argv.append(str(run / "curves.png"))
    capsys.readouterr()
    assert main(argv) == 2
    msg = _one_error_line(capsys.readouterr().err, prog)
    assert msg.startswith(expected), msg


def test_a_checkpoint_argument_that_is_a_file(run, capsys):
    from flax_cnn.evaluate import main
    assert main(["--checkpoint", str(run / "config.json")]) == 2
    assert _one_error_line(capsys.readouterr().err, "python -m flax_cnn.evaluate") == \
        f"--checkpoint {run / 'config.json'}: not a directory"


@pytest.mark.parametrize("twin", ["jax", "torch"])
@pytest.mark.parametrize("what", ["--model truncated", "--init-from truncated", "--init-from another model",
                                  "--resume with config.json truncated"])
def test_a_damaged_file_given_to_a_trainer(twin, what, uninterrupted, tiny_model_json, tmp_path, capsys):
    cfg = uninterrupted[0].replace(out=str(tmp_path / "new"))
    if what == "--model truncated":
        model = tmp_path / "model.json"
        model.write_text(open(tiny_model_json).read()[:50])
        argv, expected = cli_args(cfg.replace(model=str(model))), f"--model {model}: not valid JSON ("
    elif what.startswith("--init-from"):
        init = tmp_path / "init.safetensors"
        if what.endswith("truncated"):
            import shutil
            shutil.copy(uninterrupted[1] / "init.safetensors", init)
            truncate(init, 20)
            expected = f"{init}{SAFETENSORS_TRUNCATED}"
        else:
            import torch_ref
            from torch_ref.weights import save_weights
            save_weights(torch_ref.build_model(ModelConfig()), init)
            expected = f"{init}: these weights do not fit the model (shape mismatch at features.c1.0.conv.weight"
        argv = cli_args(cfg, init_from=init)
    else:
        run = copy_run(uninterrupted[1], tmp_path / "run")
        truncate(run / "config.json", 40)
        argv = cli_args(cfg.replace(out=str(run)), resume=True)
        expected = f"--resume: the run's config.json {run / 'config.json'}: not valid JSON ("
    rc, _, err = train_cli(twin, argv, capsys)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"{PROG[twin]}: error: {expected}"), err[0]


BROKEN_MODULES = {
    "syntax": ("def make(:\n", "importing brokenmod failed in {path}, line 1 (SyntaxError: "),
    "null bytes": ("import torch\x00\n", "importing brokenmod failed"),
    "raises": ("raise RuntimeError('no GPU here')\n", "importing brokenmod failed (RuntimeError: no GPU here)"),
    "factory raises": ("def make():\n    raise TypeError('make() needs a config')\n",
                       "calling it failed (TypeError: make() needs a config)"),
}


@pytest.mark.parametrize("kind", list(BROKEN_MODULES))
def test_port_a_broken_module_file(kind, tmp_path, monkeypatch, capsys):
    from parity.port.cli import main

    source, expected = BROKEN_MODULES[kind]
    path = tmp_path / "brokenmod.py"
    path.write_bytes(source.encode())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "brokenmod", raising=False)
    assert main(["--module", "brokenmod:make", "--input-shape", "1,3,8,8", "--out", str(tmp_path / "out")]) == 2
    msg = _one_error_line(capsys.readouterr().err, "python -m parity.port")
    assert msg.startswith("--module ") and expected.format(path=path) in msg, msg
