"""Plumbing every family shares, generic over a (torch module, Flax NNX module, key map) pair.

A key map is any list of objects with `.torch_key`, `.flax_path`, `.torch_shape`, `.to_torch(a)`
and `.to_flax(a)` (for this project: `flax_cnn.model.weights.key_map(cfg)`). Families never trust the
Flax model's own weights: they copy the torch model's tensors through the key map first, so a
wrong layout change in the map shows up as a divergence.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable, Iterator, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

ModulePair = tuple[str, tuple]  # (torch module name, Flax module path)
DTYPES = ("float32", "float64")


class KeyMappingLike(Protocol):
    torch_key: str
    flax_path: tuple
    torch_shape: tuple

    def to_torch(self, a: np.ndarray) -> np.ndarray: ...

    def to_flax(self, a: np.ndarray) -> np.ndarray: ...


class ParityError(ValueError):
    """The pair cannot be compared (a tensor without a key-map entry, a path that does not exist)."""


def path_str(path: tuple) -> str:
    return "/".join(map(str, path))


def flax_get(module, path: tuple):
    """The submodule (or variable) at a Flax path; ints index lists."""
    for p in path:
        module = module[p] if isinstance(p, int) else getattr(module, p)
    return module


def flax_set(module, path: tuple, new) -> None:
    parent, last = flax_get(module, path[:-1]), path[-1]
    if isinstance(last, int):
        parent[last] = new
    else:
        setattr(parent, last, new)


def torch_set(module: torch.nn.Module, name: str, new: torch.nn.Module) -> None:
    parent_name, _, last = name.rpartition(".")
    setattr(module.get_submodule(parent_name) if parent_name else module, last, new)


def _flat(flax_model) -> dict[tuple, nnx.Variable]:
    return {tuple(p): v for p, v in nnx.to_flat_state(nnx.state(flax_model))}


def sync_weights(torch_model: torch.nn.Module, flax_model, key_map: Sequence[KeyMappingLike]) -> None:
    """Copy every tensor of `torch_model` into `flax_model` through `key_map.to_flax`, checking coverage.

    Raises ParityError naming a torch tensor or Flax variable the key map does not cover, or a
    converted tensor whose shape does not fit its Flax variable.
    """
    sd = torch_model.state_dict()
    flat = _flat(flax_model)
    mapped_t = {m.torch_key for m in key_map}
    mapped_f = {tuple(m.flax_path) for m in key_map}
    for k in sd:
        if k not in mapped_t:
            raise ParityError(f"torch tensor {k} has no key-map entry")
    for p in flat:
        if p not in mapped_f:
            raise ParityError(f"Flax variable {path_str(p)} has no key-map entry")
    for m in key_map:
        if m.torch_key not in sd:
            raise ParityError(f"key map names torch tensor {m.torch_key}, which the torch model lacks")
        if tuple(m.flax_path) not in flat:
            raise ParityError(f"key map names Flax variable {path_str(m.flax_path)}, which the Flax model lacks")
        # A copy: torch updates BN buffers in place and JAX on CPU may alias numpy memory.
        new = np.array(m.to_flax(sd[m.torch_key].detach().cpu().numpy().copy()))
        var = flat[tuple(m.flax_path)]
        old = var.get_value()
        if new.shape != old.shape:
            raise ParityError(f"{m.torch_key}: converts to {new.shape}, Flax variable "
                              f"{path_str(m.flax_path)} is {old.shape}")
        var.set_value(jnp.asarray(new.astype(old.dtype, copy=False)))  # a numpy cast: no XLA op to compile


def flax_tensors(flax_model, key_map: Sequence[KeyMappingLike]) -> dict[str, np.ndarray]:
    """Every key-map variable of the Flax model in torch naming and layout (through `to_torch`)."""
    return state_tensors(nnx.state(flax_model), key_map)


def state_tensors(state: nnx.State, key_map: Sequence[KeyMappingLike]) -> dict[str, np.ndarray]:
    """Entries of an nnx.State (params, grads, batch stats) in torch naming and layout."""
    flat = {tuple(p): v for p, v in nnx.to_flat_state(state)}
    return {m.torch_key: np.asarray(m.to_torch(np.asarray(flat[tuple(m.flax_path)].get_value())))
            for m in key_map if tuple(m.flax_path) in flat}


def check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")


def precision(dtype: str) -> contextlib.AbstractContextManager:
    """float64 needs JAX's x64 mode for everything traced inside; float32 needs nothing."""
    check_dtype(dtype)
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def prepare(torch_model: torch.nn.Module, flax_model, key_map: Sequence[KeyMappingLike],
            dtype: str = "float32", *, torch_only: bool = False) -> tuple[torch.nn.Module, object]:
    """Copies of both models with the torch weights synced into the Flax one, cast to `dtype`.

    Weights are synced in float32 and then both sides are widened, so float64 runs start from
    bit-identical values. For float64, call this inside `precision("float64")`.
    """
    tm = copy.deepcopy(torch_model)
    if torch_only:  # a torch-side measurement: the Flax model is passed through untouched
        return (tm.double() if dtype == "float64" else tm), flax_model
    fm = nnx.clone(flax_model)
    sync_weights(tm, fm, key_map)
    if dtype == "float64":
        tm.double()
        for _, var in nnx.to_flat_state(nnx.state(fm)):
            v = var.get_value()
            if jnp.issubdtype(v.dtype, jnp.floating):
                var.set_value(jnp.asarray(np.asarray(v, np.float64)))
    return tm, fm


def torch_input(x_nchw: np.ndarray, dtype: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x_nchw, dtype=np.dtype(dtype)))


def flax_input(x_nchw: np.ndarray, dtype: str) -> jax.Array:
    return jnp.asarray(to_flax_layout(np.asarray(x_nchw, dtype=np.dtype(dtype))))


def to_flax_layout(a: np.ndarray) -> np.ndarray:
    """NCHW activations (torch) → NHWC (Flax); other ranks are already in the same layout."""
    return np.transpose(a, (0, 2, 3, 1)) if a.ndim == 4 else a


def output_leaves(out, leaf: Callable = np.asarray, path: str = "") -> dict[str, np.ndarray]:
    """A model's output as {path: array}: "" for one tensor, "[0]", "['mask']", "['aux'][1]" inside tuples,
    lists and dicts (in their own order, which the emitted model.py keeps)."""
    if isinstance(out, (tuple, list)):
        return {k: v for i, o in enumerate(out) for k, v in output_leaves(o, leaf, f"{path}[{i}]").items()}
    if isinstance(out, dict):
        return {k: v for name, o in out.items() for k, v in output_leaves(o, leaf, f"{path}[{name!r}]").items()}
    return {path: leaf(out)}


def torch_output_leaves(out) -> dict[str, np.ndarray]:
    """`output_leaves` of a torch output, each in the Flax layout (a dense (N, C, H, W) output is NHWC there)."""
    return output_leaves(out, lambda t: to_flax_layout(t.detach().cpu().numpy()))


def module_pairs(key_map: Sequence[KeyMappingLike]) -> list[ModulePair]:
    """(torch module, Flax module) owning each key-map tensor: both names minus their last element."""
    seen: dict[str, tuple] = {}
    for m in key_map:
        seen.setdefault(m.torch_key.rpartition(".")[0], tuple(m.flax_path[:-1]))
    return list(seen.items())


@contextlib.contextmanager
def _swapped(replacements: dict, depth, get, put) -> Iterator[None]:
    """Put each replacement in place, deepest first (so a wrapper around a module also wraps its
    swapped children), and restore the originals in reverse order whatever happens."""
    order = sorted(replacements, key=depth, reverse=True)
    originals = [(k, get(k)) for k in order]
    try:
        for k in order:
            put(k, replacements[k])
        yield
    finally:
        for k, old in reversed(originals):
            put(k, old)


def swapped_flax(model, replacements: dict[tuple, object]) -> contextlib.AbstractContextManager:
    """Temporarily put `replacements[path]` at each path of the Flax model (NNX modules are mutable)."""
    return _swapped(replacements, len, lambda p: flax_get(model, p), lambda p, new: flax_set(model, p, new))


def swapped_torch(model: torch.nn.Module,
                  replacements: dict[str, torch.nn.Module]) -> contextlib.AbstractContextManager:
    """Temporarily replace named submodules of a torch model (deepest first, as `swapped_flax`)."""
    return _swapped(replacements, lambda n: n.count("."), model.get_submodule,
                    lambda n, new: torch_set(model, n, new))
