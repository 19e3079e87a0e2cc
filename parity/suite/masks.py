"""Dropout with the same masks in both twins: each dropout site is swapped for a fixed-mask module.

Masks are drawn once per site (keyed by the torch module name) in NCHW and transposed for Flax,
so the comparison is exact rather than statistical. `identity=True` gives all-ones masks, which
is how the train-mode families switch dropout off in a pair whose dropout rate is not zero.

A ported model's random *functions* (`F.dropout`, `torch.rand`, `torch.bernoulli`, … — a
drop-connect under `if self.training:`) get the same treatment by call order: torch's functions
are patched for the duration, and the ported module reads the same values for its random site of
the same index (`PortedModule.port_random`). Switched "off", every site keeps everything: dropout
scales by 1, rand and bernoulli's uniform draws are 0 (so `rand < keep` and `bernoulli(p)` keep).
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

    def __init__(self, rates: dict[str, float], *, seed: int = 0, identity: bool = False,
                 channels: frozenset[str] = frozenset()):
        self.rates, self.seed, self.identity, self.channels = dict(rates), seed, identity, frozenset(channels)
        self._cache: dict[tuple, np.ndarray] = {}

    def _key(self) -> tuple:
        return tuple(sorted(self.rates.items())), self.seed, self.identity, tuple(sorted(self.channels))

    # Equal banks draw equal masks: a static attribute of the swapped-in modules, they must compare
    # equal for NNX's jit to reuse a compilation across checks.
    def __eq__(self, other) -> bool:
        return isinstance(other, MaskBank) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def scale_nchw(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        key = (name, tuple(shape))
        if key not in self._cache:
            p = self.rates[name]
            if self.identity or p == 0.0:
                scale = np.ones(shape, np.float32)
            else:
                rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
                # a channel site (nn.Dropout2d) keeps or drops each (sample, channel) map whole
                drawn = shape[:2] + (1,) * (len(shape) - 2) if name in self.channels and len(shape) == 4 else shape
                scale = (rng.random(drawn) >= p).astype(np.float32) / np.float32(1.0 - p)
                scale = np.broadcast_to(scale, shape).copy() if drawn != shape else scale
            self._cache[key] = scale
        return self._cache[key]


class TorchMask(torch.nn.Module):
    def __init__(self, bank: MaskBank, name: str):
        super().__init__()
        self.bank, self.name = bank, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.from_numpy(self.bank.scale_nchw(self.name, tuple(x.shape))).to(x.dtype)


class FlaxMask(nnx.Module):
    """Takes (and ignores) the dropout key, like `flax_cnn.model.layers.Dropout`."""

    def __init__(self, bank: MaskBank, name: str):
        self.bank, self.name = bank, name

    def __call__(self, x, key=None):
        shape = (x.shape[0], x.shape[3], x.shape[1], x.shape[2]) if x.ndim == 4 else tuple(x.shape)
        return x * jnp.asarray(to_flax_layout(self.bank.scale_nchw(self.name, shape)), x.dtype)


class RandomBank:
    """Values of a forward's random sites by call index, in torch's (NCHW) layout, as float64.

    `kind` is the ported op: "dropout" gives the inverted-dropout scale for rate `p`; "uniform"
    and "bernoulli" a uniform draw (bernoulli keeps where it is below the probability); "normal" a
    standard normal draw."""

    def __init__(self, *, seed: int = 0, identity: bool = False):
        self.seed, self.identity = seed, identity

    def __eq__(self, other) -> bool:  # equal banks give equal values (see MaskBank.__eq__)
        return isinstance(other, RandomBank) and (self.seed, self.identity) == (other.seed, other.identity)

    def __hash__(self) -> int:
        return hash((self.seed, self.identity))

    def __call__(self, kind: str, index: int, shape: tuple[int, ...], p: float | None = None) -> np.ndarray:
        shape = tuple(int(s) for s in shape)
        if self.identity:
            return np.ones(shape) if kind == "dropout" else np.zeros(shape)
        rng = np.random.default_rng([self.seed, index, zlib.crc32(kind.encode())])
        if kind == "normal":
            return rng.standard_normal(shape)
        u = rng.random(shape)
        return (u >= p) / (1.0 - p) if kind == "dropout" else u


PATCHED: dict = {}
"""While `_torch_random_fixed` is active: torch's original random function -> its fixed-value stand-in
(for code holding the original, such as a traced fx graph)."""


@contextlib.contextmanager
def _torch_random_fixed(model: torch.nn.Module, bank: RandomBank) -> Iterator[None]:
    """torch's random functions draw from `bank`, numbered by call order within each forward of `model`."""
    import torch.nn.functional as F

    count = [0]

    def index() -> int:
        count[0] += 1
        return count[0] - 1

    def values(kind, shape, dtype, p=None):
        return torch.from_numpy(bank(kind, index(), tuple(shape), p)).to(dtype or torch.get_default_dtype())

    def sizes(args, kwargs):
        size = args if args else kwargs.get("size")
        return tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else tuple(size)

    def dropout(x, p=0.5, training=True, inplace=False):
        scale = values("dropout", x.shape, x.dtype, float(p))  # consumed in eval mode too, as the port numbers it
        if not training:
            return x
        return x.mul_(scale) if inplace else x * scale

    def bernoulli(x, p=None, **_):
        u = values("bernoulli", x.shape, x.dtype)
        return (u < (x if p is None else p)).to(x.dtype)

    def bernoulli_(self, p=0.5, **_):
        return self.copy_(values("bernoulli", self.shape, self.dtype) < p)

    patches = [
        (torch, "rand", lambda *a, dtype=None, **k: values("uniform", sizes(a, k), dtype)),
        (torch, "randn", lambda *a, dtype=None, **k: values("normal", sizes(a, k), dtype)),
        (torch, "rand_like", lambda x, dtype=None, **k: values("uniform", x.shape, dtype or x.dtype)),
        (torch, "randn_like", lambda x, dtype=None, **k: values("normal", x.shape, dtype or x.dtype)),
        (torch, "bernoulli", bernoulli), (torch.Tensor, "bernoulli", bernoulli),
        (torch.Tensor, "bernoulli_", bernoulli_), (F, "dropout", dropout),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    reset = model.register_forward_pre_hook(lambda *_: count.__setitem__(0, 0))
    try:
        for (owner, name, fn), (_, _, original) in zip(patches, originals):
            setattr(owner, name, fn)
            PATCHED[original] = fn
        yield
    finally:
        reset.remove()
        PATCHED.clear()
        for owner, name, fn in originals:
            setattr(owner, name, fn)


@contextlib.contextmanager
def fixed_dropout(torch_model: torch.nn.Module, flax_model, dropout_pairs: Sequence[ModulePair], *,
                  seed: int = 0, identity: bool = False) -> Iterator[MaskBank]:
    """Both twins' dropout sites replaced by the same fixed masks (all ones with `identity`)."""
    rates = {name: float(getattr(torch_model.get_submodule(name), "p", 0.0)) for name, _ in dropout_pairs}
    channels = frozenset(n for n, _ in dropout_pairs if isinstance(torch_model.get_submodule(n), torch.nn.Dropout2d))
    bank = MaskBank(rates, seed=seed, identity=identity, channels=channels)
    ported = hasattr(flax_model, "port_random")  # a parity.port module: its random functions too
    random_bank = RandomBank(seed=seed, identity=identity)
    with swapped_torch(torch_model, {n: TorchMask(bank, n) for n, _ in dropout_pairs}), \
            swapped_flax(flax_model, {tuple(p): FlaxMask(bank, n) for n, p in dropout_pairs}), \
            (_torch_random_fixed(torch_model, random_bank) if ported else contextlib.nullcontext()):
        if ported:
            flax_model.port_random = random_bank
        try:
            yield bank
        finally:
            if ported:
                flax_model.port_random = None
