"""`port(torch_module, example_input)`: trace, translate, assemble the NNX module, copy the weights."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from flax import nnx
from torch import fx

from flax_cnn import layers as fl
from flax_cnn.weights import KeyMapping
from parity.port import keymap
from parity.port import layers as pl
from parity.port.errors import PortError
from parity.port.module import RESERVED, PortedModule
from parity.port.module_rules import MODULE_RULES
from parity.port.report import PortReport
from parity.port.trace import trace
from parity.port.translate import Translator
from parity.port.walk import translate_graph


@dataclass(frozen=True)
class PortResult:
    """The ported module, its key map, the report, and what a parity check needs to line both up."""

    module: PortedModule
    key_map: tuple[KeyMapping, ...]
    report: PortReport
    graph_module: fx.GraphModule = field(repr=False)
    layer_pairs: tuple[tuple[str, tuple], ...] = ()
    """(torch module path, Flax path) of every ported layer, in first-call order."""
    dropout_pairs: tuple[tuple[str, tuple], ...] = ()

    def save_weights(self, path) -> None:
        keymap.save_weights(self.module, self.key_map, path)

    def load_weights(self, path) -> None:
        keymap.load_weights(self.module, self.key_map, path)


def _tree(root: torch.nn.Module, layers: dict[str, nnx.Module]) -> dict[str, nnx.Module]:
    """Top-level children of the ported module: layers nested in Scopes along their torch paths."""
    top: dict[str, nnx.Module] = {}
    scopes: dict[str, pl.Scope] = {}
    for path, layer in layers.items():
        parts = path.split(".")
        for i, name in enumerate(parts):
            reserved = RESERVED if i == 0 else {"torch_type"}
            if name in reserved or hasattr(nnx.Module, name):
                raise PortError(".".join(parts[:i + 1]), f"the name {name!r} clashes with an attribute of the NNX "
                                "module; rename the torch submodule")
        parent: dict | pl.Scope = top
        for i, name in enumerate(parts[:-1]):
            prefix = ".".join(parts[:i + 1])
            if prefix not in scopes:
                scopes[prefix] = pl.Scope(type(root.get_submodule(prefix)).__name__)
                _set(parent, name, scopes[prefix])
            parent = scopes[prefix]
        _set(parent, parts[-1], layer)
    return top


def _set(parent, name: str, child) -> None:
    if isinstance(parent, dict):
        parent[name] = child
    else:
        setattr(parent, name, child)


def port(torch_module: torch.nn.Module, example_input: torch.Tensor) -> PortResult:
    """An NNX module computing what `torch_module` computes (NHWC in), with its weights and BN statistics.

    Raises PortError (naming the module path and the op) for anything that would not port exactly.
    """
    if not isinstance(torch_module, torch.nn.Module):
        raise PortError("<root>", f"expected a torch.nn.Module, got {type(torch_module).__name__}")
    if not isinstance(example_input, torch.Tensor) or example_input.ndim != 4:
        raise PortError("<root>", "the example input must be a 4-D (N, C, H, W) torch tensor")
    if type(torch_module) in MODULE_RULES:
        raise PortError(f"<root> ({type(torch_module).__name__})", "a single layer is traced as its functional "
                        "form; port a model, or wrap the layer: nn.Sequential(layer)")
    gm = trace(torch_module, example_input)
    t = Translator(gm, torch_module)
    program = translate_graph(t)
    key_map = keymap.build_key_map(torch_module, t.layers)
    source = type(torch_module).__qualname__
    module = PortedModule(_tree(torch_module, t.layers), program, f"{type(torch_module).__module__}.{source}")
    keymap.import_tensors(module, keymap.torch_tensors(torch_module), key_map)
    module.train() if torch_module.training else module.eval()
    pairs = tuple((p, tuple(p.split("."))) for p in t.layers)
    drops = tuple((p, f) for p, f in pairs if isinstance(t.layers[p], fl.Dropout))
    n_torch = sum(p.numel() for p in torch_module.parameters())
    notes = ("one graph for both modes (traced in train and in eval mode, the same); the ported module's "
             ".train()/.eval() switch BatchNorm and dropout", *t.notes)
    report = PortReport(source, tuple(example_input.shape), tuple(t.rows), n_torch, pl.count_params(module),
                        len(key_map), notes)
    return PortResult(module, key_map, report, gm, pairs, drops)
