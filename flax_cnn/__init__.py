"""flax-cnn: a compact CIFAR-10 CNN in JAX/Flax NNX, with a PyTorch twin and parity tooling.

Names are imported lazily, so framework-free parts (`flax_cnn.model.config`, `flax_cnn.data`) can be
used by the torch twin without importing JAX.
"""

from importlib import import_module

_EXPORTS = {
    "ModelConfig": "flax_cnn.model.config",
    "ConvSpec": "flax_cnn.model.config",
    "BlockSpec": "flax_cnn.model.config",
    "ConfigError": "flax_cnn.model.config",
    "receptive_field": "flax_cnn.model.analysis",
    "summary": "flax_cnn.model.analysis",
    "param_count": "flax_cnn.model.analysis",
    "macs": "flax_cnn.model.analysis",
    "build_model": "flax_cnn.model.cnn",
    "CNN": "flax_cnn.model.cnn",
    "save_weights": "flax_cnn.model.weights",
    "load_weights": "flax_cnn.model.weights",
    "TrainConfig": "flax_cnn.training.config",
    "train_and_evaluate": "flax_cnn.training.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'flax_cnn' has no attribute {name!r}")
