"""Dropout with the same masks in both twins: each dropout site is swapped for a fixed-mask module.

Masks are drawn once per site (keyed by the torch module name) in NCHW and transposed for Flax,
so the comparison is exact rather than statistical. `identity=True` gives all-ones masks, which
is how the train-mode families switch dropout off in a pair whose dropout rate is not zero.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import Iterator, Sequence

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from parity.suite.twins import ModulePair, swapped_flax, swapped_torch, to_flax_layout


class MaskBank:
    """Inverted-dropout scale arrays (mask / (1 - p)), one per site and input shape, drawn lazily."""

    def __init__(self, rates: dict[str, float], *, seed: int = 0, identity: bool = False):
        self.rates, self.seed, self.identity = dict(rates), seed, identity
        self._cache: dict[tuple, np.ndarray] = {}

    def scale_nchw(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        key = (name, tuple(shape))
        if key not in self._cache:
            p = self.rates[name]
            if self.identity or p == 0.0:
                scale = np.ones(shape, np.float32)
            else:
                rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
                scale = (rng.random(shape) >= p).astype(np.float32) / np.float32(1.0 - p)
            self._cache[key] = scale
        return self._cache[key]


class TorchMask(torch.nn.Module):
    def __init__(self, bank: MaskBank, name: str):
        super().__init__()
        self.bank, self.name = bank, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.from_numpy(self.bank.scale_nchw(self.name, tuple(x.shape))).to(x.dtype)


class FlaxMask(nnx.Module):
    """Takes (and ignores) the dropout key, like `flax_cnn.layers.Dropout`."""

    def __init__(self, bank: MaskBank, name: str):
        self.bank, self.name = bank, name

    def __call__(self, x, key=None):
        shape = (x.shape[0], x.shape[3], x.shape[1], x.shape[2]) if x.ndim == 4 else tuple(x.shape)
        return x * jnp.asarray(to_flax_layout(self.bank.scale_nchw(self.name, shape)), x.dtype)


@contextlib.contextmanager
def fixed_dropout(torch_model: torch.nn.Module, flax_model, dropout_pairs: Sequence[ModulePair], *,
                  seed: int = 0, identity: bool = False) -> Iterator[MaskBank]:
    """Both twins' dropout sites replaced by the same fixed masks (all ones with `identity`)."""
    rates = {name: float(getattr(torch_model.get_submodule(name), "p", 0.0)) for name, _ in dropout_pairs}
    bank = MaskBank(rates, seed=seed, identity=identity)
    with swapped_torch(torch_model, {n: TorchMask(bank, n) for n, _ in dropout_pairs}), \
            swapped_flax(flax_model, {tuple(p): FlaxMask(bank, n) for n, p in dropout_pairs}):
        yield bank
