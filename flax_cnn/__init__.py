"""flax-cnn: a compact CIFAR-10 CNN in JAX/Flax NNX, with a PyTorch twin and parity tooling.

Names are imported lazily, so framework-free parts (`flax_cnn.config`, `flax_cnn.data`) can be
used by the torch twin without importing JAX.
"""

from importlib import import_module

_EXPORTS = {
    "ModelConfig": "flax_cnn.config",
    "ConvSpec": "flax_cnn.config",
    "BlockSpec": "flax_cnn.config",
    "ConfigError": "flax_cnn.config",
    "receptive_field": "flax_cnn.arch",
    "summary": "flax_cnn.arch",
    "param_count": "flax_cnn.arch",
    "macs": "flax_cnn.arch",
    "build_model": "flax_cnn.model",
    "CNN": "flax_cnn.model",
    "save_weights": "flax_cnn.weights",
    "load_weights": "flax_cnn.weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'flax_cnn' has no attribute {name!r}")
