"""A Flax NNX model from an emitted `model.py` (`python -m parity port … --out DIR` writes DIR/model.py).

The file is the user's: it imports numpy, jax, flax and safetensors only, and defines `load(path=None)`
(the module with the weights of `path`, default the model.safetensors beside it, torch naming),
`state_dict(model)` and `save(model, path)` (torch naming, so the original torch module
`load_state_dict`s them) and `KEY_MAP`. The module is called `model(x_nhwc, key=...)` in train mode and
`.eval()` for inference, as the Flax twin is, so the JAX trainer, evaluate and predict take it unchanged.
This module imports the file by path (importlib); nothing of `parity` is imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from flax_cnn.model.config import ConfigError
from flax_cnn.runtime.faults import FileError, one_line

EMITTED_NAMES = ("load", "save", "state_dict", "KEY_MAP")


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class EmittedModel:
    """The emitted file at `path`, imported; `build()` makes its module, `save()` writes torch-named weights."""

    def __init__(self, path: str | Path, *, flag: str = "--flax-model"):
        self.path, self.flag = Path(path), flag
        p = self.path.resolve()
        if not p.is_file():
            raise ConfigError(f"{flag} {path}: " + ("is a directory, not a file" if p.is_dir() else "no such file"))
        self.sha256 = sha256(p)
        name = f"flax_cnn_emitted_{self.sha256[:16]}"
        spec = importlib.util.spec_from_file_location(name, p)
        if spec is None or spec.loader is None:
            raise ConfigError(f"{flag} {path}: not a Python file")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # as `import` would: dataclasses and pickling look their module up there
        try:
            spec.loader.exec_module(mod)
        except Exception as e:
            sys.modules.pop(name, None)
            raise ConfigError(f"{flag} {path}: importing it failed ({one_line(e)})") from None
        missing = [n for n in EMITTED_NAMES if not hasattr(mod, n)]
        if missing:
            raise ConfigError(f"{flag} {path}: not a model.py written by `python -m parity port` "
                              f"(it defines no {', '.join(missing)})")
        self.module = mod

    def build(self, weights: str | Path | None = None):
        """The NNX module (train mode) with the file's own weights, or with `weights` (torch-named safetensors)."""
        try:
            model = self.module.load(str(weights)) if weights is not None else self.module.load()
        except Exception as e:
            if weights is not None:
                raise FileError(f"{weights}: these weights do not fit the model of {self.flag} {self.path} "
                                f"({one_line(e)})") from None
            raise ConfigError(f"{self.flag} {self.path}: its load() failed ({one_line(e)}); it reads the "
                              "model.safetensors beside it") from None
        model.train()
        return model

    def check_output(self, model, *, num_classes: int, input_size: int = 32, in_channels: int = 3) -> None:
        """ConfigError unless the eval-mode model maps a (2, H, W, C) batch to (2, num_classes) logits
        (shapes only: nothing is computed)."""
        import jax
        import jax.numpy as jnp
        from flax import nnx

        shape = (2, input_size, input_size, in_channels)
        model.eval()
        try:
            graphdef, state = nnx.split(model)
            out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state,
                                 jax.ShapeDtypeStruct(shape, jnp.float32))
        except Exception as e:
            raise ConfigError(f"{self.flag} {self.path}: the model rejects a {shape} NHWC input "
                              f"({one_line(e)})") from None
        finally:
            model.train()
        got = out.shape if isinstance(out, jax.ShapeDtypeStruct) else type(out).__name__
        if got != (2, num_classes):
            raise ConfigError(f"{self.flag} {self.path}: its output for a {shape} NHWC input is {got}, not "
                              f"(N, {num_classes}) class logits")

    def save(self, model, path: str | Path) -> None:
        self.module.save(model, str(path))

    def state_dict(self, model) -> dict:
        return self.module.state_dict(model)
