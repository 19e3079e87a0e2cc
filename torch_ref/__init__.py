"""The PyTorch twin of flax_cnn: the same `ModelConfig`, NCHW, torch semantics."""

from torch_ref.model import CNN, build_model

__all__ = ["CNN", "build_model"]
