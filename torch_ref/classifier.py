"""A trained run (of either twin) as a torch `logits_fn(images NHWC numpy) -> logits numpy`."""

from __future__ import annotations

import numpy as np
import torch

from flax_cnn.inference.run_dir import RunDir
from torch_ref.model import build_model, build_torch_model
from torch_ref.weights import load_weights


def load_classifier(run: RunDir, which: str = "final"):
    if run.config.torch_model:
        model = build_torch_model(run.config.torch_model, num_classes=len(run.class_names))
    elif run.config.flax_model:
        from flax_cnn.model.config import ConfigError

        raise ConfigError(f"--checkpoint {run.path}: trained an emitted Flax model (--flax-model "
                          f"{run.config.flax_model}) and names no torch model; use python -m flax_cnn.evaluate")
    else:
        model = build_model(run.model_config)
    load_weights(model, run.weights(which))
    model.eval()

    @torch.no_grad()
    def logits_fn(images: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))).numpy()

    return logits_fn
