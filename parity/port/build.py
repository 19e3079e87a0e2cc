"""`port(torch_module, example_input)`: trace, translate, assemble the NNX module, copy the weights."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from flax import nnx
from torch import fx

from flax_cnn.model import layers as fl
from flax_cnn.model.weights import KeyMapping
from parity.port import keymap
from parity.port import layers as pl
from parity.port.errors import PortError
from parity.port.module import RESERVED, PortedModule
from parity.port.module_rules import MODULE_RULES
from parity.port.report import PortReport
from parity.port.program import Program
from parity.port.trace import Traced, trace
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


def _translated(traced: Traced, root: torch.nn.Module, layers: dict) -> tuple[Translator, Program, Program | None]:
    """(train-mode translator, train program, eval program or None when both modes run the same graph)."""
    t = Translator(traced.train, root, layers)
    train = translate_graph(t)
    if traced.same_in_both_modes:
        return t, train, None
    return t, train, translate_graph(Translator(traced.eval, root, layers))


def _first_difference(a: Program, b: Program) -> str:
    for x, y in zip(a.ops, b.ops):
        if x != y:
            return x.out
    return "the output"


def _batch_size_fixed(torch_module: torch.nn.Module, example: torch.Tensor, programs: tuple) -> tuple[int | None, str]:
    """(None, "") when the port computes the same ops at another batch size, else (the example's batch,
    the first op that differs): a batch size Python used as a constant (`b = int(x.size(0))`, a
    loop over the batch) ties the program to it."""
    other = torch.cat([example, example[:1]])
    _, train, eval_ = _translated(trace(torch_module, other), torch_module, {})
    if (train, eval_) == programs:
        return None, ""
    return example.shape[0], _first_difference(programs[0], train) if train != programs[0] \
        else _first_difference(programs[1], eval_)


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
    traced = trace(torch_module, example_input)
    layers: dict[str, nnx.Module] = {}
    t, program, eval_program = _translated(traced, torch_module, layers)
    batch, differs = _batch_size_fixed(torch_module, example_input, (program, eval_program))
    key_map = keymap.build_key_map(torch_module, layers)
    source = type(torch_module).__qualname__
    module = PortedModule(_tree(torch_module, layers), program, f"{type(torch_module).__module__}.{source}",
                          eval_program=eval_program, batch_size=batch)
    keymap.import_tensors(module, keymap.torch_tensors(torch_module), key_map)
    module.train() if torch_module.training else module.eval()
    pairs = tuple((p, tuple(p.split("."))) for p in layers)
    drops = tuple((p, f) for p, f in pairs if isinstance(layers[p], fl.Dropout))
    n_torch = sum(p.numel() for p in torch_module.parameters())
    notes = [("one graph for both modes (traced in train and in eval mode, the same); the ported module's "
              ".train()/.eval() switch BatchNorm and dropout") if eval_program is None else
             ("two graphs: the forward branches on self.training, so the port keeps the train-mode and the "
              "eval-mode program and .train()/.eval() choose between them"), *t.notes]
    notes += [f"specialised: {s.how} of {s.node} at {s.where} is the constant {s.value} for this input shape"
              for s in traced.specialized]
    if batch is not None:
        notes.append(f"the program depends on the batch size (first at {differs}): it runs only with batch {batch}")
    report = PortReport(source, tuple(example_input.shape), tuple(t.rows), n_torch, pl.count_params(module),
                        len(key_map), tuple(notes))
    return PortResult(module, key_map, report, traced.train, pairs, drops)
