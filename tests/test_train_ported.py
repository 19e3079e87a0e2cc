"""Training what the porter wrote (issue 33): `python -m flax_cnn.train --flax-model model.py` in a process
where `import torch` fails, kill -9 / `--resume` on a ported model ending with the uninterrupted metrics,
exported weights the original torch module loads with strict=True, and the bad-input one-liners of
`--torch-model` / `--flax-model` (one line, exit 2)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from torch import nn

from tests.conftest import write_binary_cifar
from tests.faults_util import PROG, same_metrics, steps, train_cli

ROOT = Path(__file__).resolve().parents[1]


class TinyNet(nn.Module):
    """conv-BN-ReLU, a strided conv, dropout, GAP, linear: a CIFAR classifier that compiles in seconds."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.down = nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x):
        x = torch.relu(self.down(self.stem(x)))
        return self.fc(self.drop(x.mean((2, 3))))


def raising_factory():
    raise RuntimeError("no weights here")


def seven_classes():
    return TinyNet(num_classes=7)


# Blocks torch (and parity, tests) before anything is imported, then runs the JAX trainer's CLI.
RUNNER = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("torch", "parity", "tests"):
                raise ImportError(f"{name} is blocked: training an emitted model.py must not need it")
    sys.meta_path.insert(0, Block())
    try:
        import torch  # noqa: F401
        raise SystemExit("torch imported")
    except ImportError:
        pass
    from flax_cnn.train import main
    rc = main(sys.argv[1:])
    assert not any(m.split(".")[0] == "torch" for m in sys.modules), "torch was imported"
    sys.exit(rc)
""")


def _args(data: str, model_py: Path, out: Path, **extra) -> list[str]:
    args = ["--flax-model", str(model_py), "--data-dir", data, "--out", str(out), "--epochs", "2", "--batch-size", "32",
            "--train-examples", "128", "--test-examples", "64", "--eval-batch-size", "64", "--max-lr", "0.01",
            "--no-progress", "--checkpoint-every", "3", "--log-every", "2", "--devices", "1"]
    for k, v in extra.items():
        args += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return args


@pytest.fixture(scope="module")
def ported(tmp_path_factory):
    """(torch module, folder with model.py + model.safetensors, tiny CIFAR dir) — ported in this process."""
    from parity.port import port

    root = tmp_path_factory.mktemp("ported")
    torch.manual_seed(0)
    model = TinyNet()
    port(model, torch.randn(2, 3, 32, 32), out_dir=root / "ported")
    data = write_binary_cifar(root / "cifar", n_train=200, n_test=100)
    return model, root / "ported", str(data)


@pytest.fixture(scope="module")
def reference(ported):
    """An uninterrupted 2-epoch run of `--flax-model` in a subprocess where `import torch` fails.

    --cpu-devices 4 as in this pytest process (the resume test's second half runs here): XLA:CPU's
    reduction order depends on the client."""
    _, folder, data = ported
    out = folder.parent / "reference"
    r = subprocess.run([sys.executable, "-c", RUNNER, *_args(data, folder / "model.py", out), "--cpu-devices", "4"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stdout


def test_an_emitted_model_trains_without_torch(ported, reference):
    _, folder, _ = ported
    out, stdout = reference
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(np.isfinite(r["train_loss"]) for r in rows)
    for name in ("model.safetensors", "best.safetensors", "init.safetensors", "curves.png", "confusion.png",
                 "summary.json", "data.json"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["flax_model"] == str(folder / "model.py") and cfg["model_config"] is None
    assert cfg["model_files"]["flax_model"]["path"] == str((folder / "model.py").resolve())
    assert len(cfg["model_files"]["flax_model"]["sha256"]) == 64
    summary = json.loads((out / "summary.json").read_text())
    assert summary["params"] == sum(p.numel() for p in ported[0].parameters())
    # traced from model.py: 3x3 conv (RF 3), 3x3 stride-2 conv (+2), mean over H, W;
    # MACs 32*32*8*3*9 + 16*16*12*8*9 + 12*10
    assert summary["receptive_field"] == 5 and summary["macs"] == 442_488
    assert re.search(r"^\| receptive field +\| +5 px \|$", stdout, re.M), stdout
    # the initial weights are the port's, i.e. the torch module's
    init, orig = load_file(str(out / "init.safetensors")), load_file(str(folder / "model.safetensors"))
    assert init.keys() == orig.keys() and all(np.array_equal(init[k], orig[k]) for k in init)


def test_exported_weights_load_into_the_original_torch_module(ported, reference):
    model, _, _ = ported
    out, _ = reference
    for name in ("model.safetensors", "best.safetensors"):
        tensors = {k: torch.from_numpy(v) for k, v in load_file(str(out / name)).items()}
        back = TinyNet()
        back.load_state_dict(tensors, strict=True)
        assert not torch.equal(back.fc.weight, model.fc.weight)  # trained: the weights moved
        assert back.stem[1].num_batches_tracked.dtype == torch.int64


def test_sigkill_then_resume_of_a_ported_model_equals_uninterrupted(ported, reference, tmp_path):
    """Killed with SIGKILL inside the save of step 7 (orbax's files written, not yet renamed)."""
    _, folder, data = ported
    ref, _ = reference
    run = tmp_path / "run"
    marker = tmp_path / "in_save"
    proc = subprocess.Popen([sys.executable, "-m", "tests.fault_child", "orbax", "7", str(marker), "flax_cnn.train",
                             *_args(data, folder / "model.py", run), "--cpu-devices", "4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the run never reached the save of step 7: " + (
        proc.stderr.read() if proc.poll() is not None else "still running")
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert steps(run / "checkpoints") == [3, 4]  # 4 steps per epoch, every 3 steps, the last 2 kept

    from flax_cnn.training.cli import parse
    from flax_cnn.training.trainer import train_and_evaluate

    logs = []
    train_and_evaluate(parse(_args(data, folder / "model.py", run, resume=True), "t", ""), log=logs.append)
    assert f"resuming {run} at epoch 2, step 0/4" in logs
    assert same_metrics(run, ref)
    a, b = load_file(str(run / "model.safetensors")), load_file(str(ref / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_ported_model_trains_on_two_processes_and_in_bf16(ported, reference, tmp_path):
    """Multi-process (two JAX processes, gloo over 127.0.0.1, one device each) and --precision bf16 take an
    emitted model.py as they take the twin: the same curve as one process within the all-reduce order's
    rounding, and bf16 within its own rounding of float32."""
    import socket

    _, folder, data = ported
    ref, _ = reference
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    one_process = _args(data, folder / "model.py", tmp_path / "mh")
    i = one_process.index("--devices")
    del one_process[i:i + 2]  # a multi-process run uses every device
    procs = [subprocess.Popen([sys.executable, "-m", "flax_cnn.train", *one_process, "--cpu-devices", "1", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                               "--process-id", str(i)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT) for i in range(2)]
    bf16 = subprocess.run([sys.executable, "-m", "flax_cnn.train", *_args(data, folder / "model.py", tmp_path / "bf16"),
                           "--cpu-devices", "4", "--precision", "bf16"], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert bf16.returncode == 0, bf16.stderr[-3000:]
    want = [json.loads(ln) for ln in (ref / "metrics.jsonl").read_text().splitlines()]
    for run, rel in (("mh", 2e-3), ("bf16", 3e-2)):  # bf16: 8 mantissa bits, 2 epochs of 4 steps
        got = [json.loads(ln) for ln in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        assert len(got) == len(want), run
        for a, b in zip(want, got):
            for k in ("train_loss", "test_loss"):
                assert abs(a[k] - b[k]) <= rel * abs(a[k]), (run, k, a[k], b[k])


def test_resume_refuses_a_changed_model_file(ported, reference, tmp_path, capsys):
    _, folder, data = ported
    ref, _ = reference
    run = shutil.copytree(ref, tmp_path / "run")
    cfg = json.loads((run / "config.json").read_text())
    cfg["model_files"]["flax_model"]["sha256"] = "0" * 64  # as if model.py had been edited since
    (run / "config.json").write_text(json.dumps(cfg))
    rc, _, err = train_cli("jax", _args(data, folder / "model.py", run, resume=True), capsys)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"{PROG['jax']}: error: --resume: {(folder / 'model.py').resolve()} (--flax-model) has "
                             f"changed since the run in {run} started (sha256 000000000000… now ")


def test_bad_flax_model_files_are_one_line(ported, tmp_path, capsys):
    _, _, data = ported
    not_emitted = tmp_path / "model.py"
    not_emitted.write_text("x = 1\n")
    broken = tmp_path / "broken.py"
    broken.write_text("def load(:\n")
    from parity.port import port

    torch.manual_seed(0)
    port(seven_classes(), torch.randn(2, 3, 32, 32), out_dir=tmp_path / "seven")
    cases = [
        (not_emitted, f"--flax-model {not_emitted}: not a model.py written by `python -m parity port` "
                      "(it defines no load, save, state_dict, KEY_MAP)"),
        (broken, f"--flax-model {broken}: importing it failed (SyntaxError: "),
        (tmp_path / "seven" / "model.py", f"--flax-model {tmp_path / 'seven' / 'model.py'}: its output for a "
                                          "(2, 32, 32, 3) NHWC input is (2, 7), not (N, 10) class logits"),
        (tmp_path / "absent.py", f"--flax-model: {tmp_path / 'absent.py'} is not a file"),
    ]
    for path, line in cases:
        rc, _, err = train_cli("jax", _args(data, path, tmp_path / "out"), capsys)
        assert rc == 2 and len(err) == 1, err
        assert err[0].startswith(f"{PROG['jax']}: error: {line}"), err[0]
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_bad_torch_models_are_one_line(ported, tmp_path, capsys):
    _, _, data = ported
    me = "tests.test_train_ported"
    cases = [
        (f"{me}:raising_factory",
         f"--torch-model '{me}:raising_factory': calling it failed (RuntimeError: no weights here)"),
        (f"{me}:seven_classes", f"--torch-model {me}:seven_classes: its output for a (2, 3, 32, 32) NCHW input is "
                                "(2, 7), not (N, 10) class logits"),
        (f"{me}:nothing", f"--torch-model '{me}:nothing': {me} has no attribute nothing"),
        ("no_such_pkg.mod:Net", "--torch-model 'no_such_pkg.mod:Net': cannot import no_such_pkg.mod"),
    ]
    for spec, line in cases:
        argv = ["--torch-model", spec] + _args(data, "x", tmp_path / "out")[2:]
        rc, _, err = train_cli("torch", argv, capsys)
        assert rc == 2 and len(err) == 1, err
        assert err[0].startswith(f"{PROG['torch']}: error: {line}"), err[0]


def test_torch_ref_trains_the_torch_model_from_the_same_initial_weights(ported, tmp_path, capsys):
    """`--torch-model` in the torch trainer: seeded as the porter seeds the factory, so its init.safetensors
    is the port's model.safetensors; config.json records the factory's source file and its sha256."""
    _, folder, data = ported
    spec = "tests.test_train_ported:TinyNet"
    argv = ["--torch-model", spec] + _args(data, "x", tmp_path / "t")[2:]
    rc, out, err = train_cli("torch", argv, capsys)
    assert rc == 0 and err == [], err
    init, port_init = load_file(str(tmp_path / "t" / "init.safetensors")), load_file(str(folder / "model.safetensors"))
    assert init.keys() == port_init.keys() and all(np.array_equal(init[k], port_init[k]) for k in init)
    rec = json.loads((tmp_path / "t" / "config.json").read_text())["model_files"]["torch_model"]
    assert rec["spec"] == spec and rec["path"] == __file__ and len(rec["sha256"]) == 64
    assert re.search(rf"^\| model +\| +{re.escape(spec)} \|$", out, re.M), out  # the summary names it
    assert re.search(r"^\| receptive field +\| +n/a \|$", out, re.M), out
    assert re.search(r"^\| MACs per image +\| +0.44 M \|$", out, re.M), out  # 442,488 by torch's FlopCounterMode
    from torch_ref.evaluate import main as evaluate

    capsys.readouterr()
    assert evaluate(["--checkpoint", str(tmp_path / "t")]) == 0
    assert "trained by torch, evaluated by torch" in capsys.readouterr().out


def test_bench_refuses_a_bad_torch_model_in_one_line(capsys):
    from parity import bench

    with pytest.raises(SystemExit) as e:
        bench.main(["--torch-model", "tests.test_train_ported:seven_classes"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["python -m parity.bench: error: --torch-model tests.test_train_ported:seven_classes: its output "
                   "for a (2, 3, 32, 32) NCHW input is (2, 7), not (N, 10) class logits"]


def test_lr_find_takes_the_ported_model_in_both_frameworks(ported, tmp_path, capsys):
    """`lr_find --flax-model` / `--torch-model` sweep the user's model, not the default net: from the same
    initial weights on the same batches, the first step's loss agrees between the frameworks."""
    from flax_cnn.lr_find import main as jax_lr_find
    from torch_ref.lr_find import main as torch_lr_find

    _, folder, data = ported
    common = ["--data-dir", data, "--batch-size", "32", "--train-examples", "128", "--num-iter", "4",
              "--no-progress", "--devices", "1"]
    runs = {"jax_flax_model": (jax_lr_find, ["--flax-model", str(folder / "model.py")]),
            "jax_torch_model": (jax_lr_find, ["--torch-model", "tests.test_train_ported:TinyNet"]),
            "torch": (torch_lr_find, ["--torch-model", "tests.test_train_ported:TinyNet"])}
    first = {}
    for name, (main, model) in runs.items():
        out = tmp_path / f"{name}.json"
        assert main([*model, *common, "--json", str(out), "--plot", str(tmp_path / f"{name}.png")]) == 0, \
            capsys.readouterr().err
        first[name] = json.loads(out.read_text())["losses"][0]
    assert first["jax_flax_model"] == pytest.approx(first["jax_torch_model"], rel=1e-6)  # one port, one key
    # TinyNet's Dropout(0.1) draws other masks in torch: measured 1.8e-4 apart, float32 rounding alone ~1e-7
    assert first["jax_flax_model"] == pytest.approx(first["torch"], rel=1e-3)
    assert torch_lr_find(["--flax-model", str(folder / "model.py"), *common]) == 2
    assert "--flax-model is an emitted Flax model for the JAX LR finder" in capsys.readouterr().err
