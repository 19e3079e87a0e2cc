"""Models from outside ModelConfig: `--torch-model pkg.mod:factory` and `--flax-model ported/model.py`.

What the trainers share about them: the records config.json keeps (the path and sha256 of each model
file), the `--resume` check that the files did not change, and for the JAX trainer, turning
`--torch-model` into an emitted model.py by running the porter as a separate process
(`python -m parity port`), so `flax_cnn` itself never imports `parity`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from flax_cnn.model.config import ConfigError
from flax_cnn.training.config import TrainConfig
from flax_cnn.training.errors import TrainingError

PORT_DIR = "ported"  # OUT/ported/model.py: where flax_cnn.train --torch-model ports to


def is_external(cfg: TrainConfig) -> bool:
    return bool(cfg.torch_model or cfg.flax_model)


def describe(cfg: TrainConfig) -> str:
    if cfg.flax_model and cfg.torch_model:
        return f"{cfg.torch_model} (ported: {cfg.flax_model})"
    return cfg.flax_model or cfg.torch_model or (cfg.model or "ModelConfig()")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def records(cfg: TrainConfig) -> dict:
    """{"flax_model": {"path", "sha256"}, "torch_model": {"spec", "path", "sha256"}} for what `cfg` names;
    the torch model's file is the source of the factory's module."""
    from flax_cnn.runtime.factory import factory_source

    out = {}
    if cfg.flax_model:
        p = Path(cfg.flax_model).resolve()
        out["flax_model"] = {"path": str(p), "sha256": _sha256(p) if p.is_file() else None}
    if cfg.torch_model:
        src = factory_source(cfg.torch_model)
        out["torch_model"] = {"spec": cfg.torch_model, "path": str(src) if src else None,
                              "sha256": _sha256(src) if src else None}
    return out


def save_config(cfg: TrainConfig, path: Path) -> None:
    """config.json: the twin's (flags + "model_config"), or for an external model the flags,
    "model_config": null and "model_files" (`records`)."""
    if not is_external(cfg):
        cfg.save(path)
        return
    path.write_text(json.dumps(dict(cfg.to_dict(), model_config=None, model_files=records(cfg)), indent=2) + "\n")


def check_unchanged(cfg: TrainConfig, out: Path) -> None:
    """--resume: ConfigError (one line) if a model file the run in `out` recorded has changed since."""
    saved = out / "config.json"
    if not saved.is_file():
        return
    try:
        old = json.loads(saved.read_text()).get("model_files") or {}
    except (OSError, ValueError, AttributeError):
        return  # the flag comparison of the loop reports an unreadable config.json
    now = records(cfg)
    for key, rec in old.items():
        cur = now.get(key)
        if cur is None or not rec.get("sha256"):
            continue  # a different flag set: the loop's flag comparison names it
        if cur["sha256"] != rec["sha256"]:
            now_sha = (cur["sha256"] or "unreadable")[:12]
            raise ConfigError(f"--resume: {cur['path'] or rec['path']} (--{key.replace('_', '-')}) has changed since "
                              f"the run in {out} started (sha256 {rec['sha256'][:12]}… now {now_sha}…); "
                              "resume with the model it was trained with, or start a new --out")


def port_torch_model(spec: str, out_dir: Path, *, seed: int, input_size: int = 32, in_channels: int = 3,
                     log=print) -> Path:
    """Run `python -m parity port --module spec` into `out_dir`; its model.py, or ConfigError with the
    porter's own one line (a factory that raises, an unportable op) or its failed parity check."""
    cmd = [sys.executable, "-m", "parity", "port", "--module", spec, "--input-shape",
           f"2,{in_channels},{input_size},{input_size}", "--out", str(out_dir), "--seed", str(seed)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode == 1:
        raise ConfigError(f"--torch-model {spec}: the port fails its parity check (see {out_dir}/parity_report.txt)")
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {r.returncode}"
        for prefix in ("python -m parity port: error: ", "python -m parity.port: error: ",
                       f"--module {spec!r}: ", f"--module {spec}: "):
            last = last.removeprefix(prefix)
        raise ConfigError(f"--torch-model {spec}: cannot be ported ({last})")
    first = next((ln for ln in r.stdout.splitlines() if ln.startswith("ported ")), "")
    if first:
        log(first)
    return out_dir / "model.py"


def emitted_module(cfg: TrainConfig):
    """(EmittedModel, its module) for `cfg.flax_model`: the file's load() weights or `--init-from` through its
    own load(path), checked to map an image batch to (N, num_classes) logits."""
    from flax_cnn.model.emitted import EmittedModel

    flag = f"--torch-model {cfg.torch_model}, ported to" if cfg.torch_model else "--flax-model"
    emitted = EmittedModel(cfg.flax_model, flag=flag)
    module = emitted.build(cfg.init_from)
    emitted.check_output(module, num_classes=cfg.model_config().num_classes)
    return emitted, module


def prepare_jax(cfg: TrainConfig, out: Path, log=print) -> TrainConfig:
    """For the JAX trainer: `--torch-model` without `--flax-model` becomes `--flax-model OUT/ported/model.py`,
    ported now (or, resuming, the port the run already holds)."""
    if not cfg.torch_model or cfg.flax_model:
        return cfg
    if cfg.num_processes > 1:
        raise ConfigError("--torch-model: a multi-process run needs the ported file on every host: run "
                          "`python -m parity port` once and pass --flax-model")
    target = out / PORT_DIR / "model.py"
    ck = out / "checkpoints"
    has_run = ck.is_dir() and any(p.name.isdigit() for p in ck.iterdir())
    if has_run and not cfg.resume:
        raise TrainingError(f"--out {out} already holds a run: pass --resume to continue it, or choose another --out")
    if not (has_run and target.is_file()):
        port_torch_model(cfg.torch_model, out / PORT_DIR, seed=cfg.seed, log=log)
    return cfg.replace(flax_model=str(target))
