"""A trained run (of either twin) as a jitted JAX `logits_fn(images NHWC) -> logits`."""

from __future__ import annotations

import jax
import numpy as np

from flax_cnn.model import ops
from flax_cnn.model.cnn import build_model
from flax_cnn.inference.run_dir import RunDir
from flax_cnn.model.weights import load_weights


def load_classifier(run: RunDir, which: str = "final"):
    model = build_model(run.model_config)
    load_weights(model, run.weights(which))
    model.eval()
    from flax import nnx

    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x), compiler_options=ops.cpu_compiler_options())
    return lambda images: np.asarray(forward(state, images))
