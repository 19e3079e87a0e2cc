"""A trained run (of either twin) as a jitted JAX `logits_fn(images NHWC) -> logits`."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from flax_cnn.model import ops
from flax_cnn.model.cnn import build_model
from flax_cnn.inference.run_dir import RunDir
from flax_cnn.model.weights import load_weights


def _emitted_model(run: RunDir):
    """The EmittedModel a --flax-model / --torch-model run was trained with (its recorded file, unchanged);
    a torch run's --torch-model is ported here, into a temporary directory."""
    from flax_cnn.model.config import ConfigError
    from flax_cnn.model.emitted import EmittedModel

    rec = run.model_files.get("flax_model") or {}
    if run.config.flax_model:
        candidates = [Path(p) for p in (rec.get("path"), run.config.flax_model) if p]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise ConfigError(f"--checkpoint {run.path}: its model file {candidates[0]} (--flax-model) is gone")
        em = EmittedModel(path)
        if rec.get("sha256") and em.sha256 != rec["sha256"]:
            raise ConfigError(f"--checkpoint {run.path}: its model file {path} (--flax-model) has changed since the "
                              "run was trained")
        return em
    import tempfile

    from flax_cnn.training import external

    tmp = Path(tempfile.mkdtemp(prefix="flax_cnn_port_"))
    return EmittedModel(external.port_torch_model(run.config.torch_model, tmp, seed=run.config.seed,
                                                  log=lambda *a, **k: None))


def load_classifier(run: RunDir, which: str = "final"):
    from flax import nnx

    if run.config.flax_model or run.config.torch_model:
        model = _emitted_model(run).build(run.weights(which))
    else:
        model = build_model(run.model_config)
        load_weights(model, run.weights(which))
    model.eval()
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x), compiler_options=ops.cpu_compiler_options())
    return lambda images: np.asarray(forward(state, images))
