"""`port(torch_module, example_input)`: trace, translate, emit `model.py`, and build the module from it.

One path: the module `port()` returns — the one `--check` proves — is imported from the emitted
source and loads the emitted `model.safetensors` through that file's own `load`.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from flax import nnx
from torch import fx

from flax_cnn.model.weights import KeyMapping, save_safetensors
from parity.port import keymap
from parity.port import layers as pl
from parity.port.emit import Param, Source, emit, unused_name, var_names
from parity.port.errors import PortError
from parity.port.module_rules import module_rules
from parity.port.program import PLAIN, Program
from parity.port.report import PortReport
from parity.port.trace import Traced, trace, user_line
from parity.port.translate import Translator, scope_of
from parity.port.walk import translate_graph


@dataclass(frozen=True)
class PortResult:
    """The ported module (built from `source_path`), its key map, the report, and what a parity check
    needs to line both up."""

    module: nnx.Module
    key_map: tuple[KeyMapping, ...]
    report: PortReport
    graph_module: fx.GraphModule = field(repr=False)
    layer_pairs: tuple[tuple[str, tuple], ...] = ()
    """(torch module path, Flax path) of every ported layer, in first-call order."""
    dropout_pairs: tuple[tuple[str, tuple], ...] = ()
    program: Program | None = field(default=None, repr=False)
    layers: dict = field(default_factory=dict, repr=False)
    """torch path -> LayerSpec of each ported layer."""
    names: dict = field(default_factory=dict, repr=False)
    """fx node name -> the Python name of that value in the emitted forward."""
    source_path: Path | None = None
    weights_path: Path | None = None
    batch_size: int | None = None
    unused: tuple[tuple[str, tuple, str], ...] = ()

    @property
    def source(self) -> str:
        return self.source_path.read_text()

    def save_weights(self, path) -> None:
        """Safetensors in torch naming, through the emitted file's own `save`."""
        sys.modules[type(self.module).__module__].save(self.module, path)

    def load_weights(self, path) -> None:
        mod = sys.modules[type(self.module).__module__]
        mod.load_tensors(self.module, mod.load_file(str(path)), mod.KEY_MAP)


def import_source(path: str | Path):
    """The emitted model.py as a module (a unique name per file content, so two ports never share one)."""
    path = Path(path)
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:12]
    name = f"ported_{re.sub(r'[^0-9A-Za-z_]', '_', path.parent.name)}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


_RESERVED = frozenset({"deterministic", "port_random", "forward", "forward_train", "forward_eval", "unused"})
"""Attribute names model.py gives the module itself: a torch child of that name would clash."""


def _tree(root: torch.nn.Module, layers: dict[str, pl.LayerSpec], params: dict[str, Param]) -> dict:
    """Nested dicts along the torch paths; leaves are layer specs and directly read tensors."""
    top: dict = {}
    for path, leaf in [*layers.items(), *params.items()]:
        parts = path.split(".")
        node = top
        for i, name in enumerate(parts[:-1]):
            if name in _RESERVED or hasattr(nnx.Module, name):
                raise PortError(".".join(parts[:i + 1]), f"the name {name!r} clashes with an attribute of the "
                                "NNX module; rename the torch submodule")
            prefix = ".".join(parts[:i + 1])
            child = node.setdefault(name, {"__type__": type(root.get_submodule(prefix)).__name__})
            if not isinstance(child, dict):
                raise PortError(prefix, "is both a ported layer and the owner of a tensor read in forward")
            node = child
        if parts[-1] in _RESERVED or hasattr(nnx.Module, parts[-1]):
            raise PortError(path, f"the name {parts[-1]!r} clashes with an attribute of the NNX module; rename "
                            "the torch submodule")
        node[parts[-1]] = leaf
    return top


def _translated(traced: Traced, root: torch.nn.Module, layers: dict
                ) -> tuple[Translator, Program, Program | None, dict[str, Param]]:
    """(train-mode translator, train program, eval program or None when both modes run the same graph,
    the tensors either program reads directly)."""
    t = Translator(traced.train, root, layers)
    train = translate_graph(t)
    if traced.same_in_both_modes:
        return t, train, None, dict(t.params)
    te = Translator(traced.eval, root, layers)
    return t, train, translate_graph(te), {**t.params, **te.params}


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
    _, train, eval_, _ = _translated(trace(torch_module, other), torch_module, {})
    if (train, eval_) == programs:
        return None, ""
    return example.shape[0], _first_difference(programs[0], train) if train != programs[0] \
        else _first_difference(programs[1], eval_)


def _comments(traced: Traced, root: torch.nn.Module) -> dict[str, str]:
    """fx node name -> 'module path: file:line' of the user code that made it."""
    out = {}
    for gm in {id(traced.train): traced.train, id(traced.eval): traced.eval}.values():
        for node in gm.graph.nodes:
            if node.op in ("placeholder", "output"):
                continue
            where = scope_of(node) or "<root>"
            line = user_line(node)
            out.setdefault(node.name, f"{where}: {line}" if line else where)
    return out


def port(torch_module: torch.nn.Module, example_input: torch.Tensor, *, out_dir: str | Path | None = None
         ) -> PortResult:
    """An NNX module computing what `torch_module` computes (NHWC in), built from the emitted
    `out_dir/model.py` with the weights of `out_dir/model.safetensors` (a temporary folder by default).

    Raises PortError (naming the module path and the op) for anything that would not port exactly.
    """
    if not isinstance(torch_module, torch.nn.Module):
        raise PortError("<root>", f"expected a torch.nn.Module, got {type(torch_module).__name__}")
    if not isinstance(example_input, torch.Tensor) or example_input.ndim != 4:
        raise PortError("<root>", "the example input must be a 4-D (N, C, H, W) torch tensor")
    if type(torch_module) in module_rules():
        raise PortError(f"<root> ({type(torch_module).__name__})", "a single layer is traced as its functional "
                        "form; port a model, or wrap the layer: nn.Sequential(layer)")
    traced = trace(torch_module, example_input)
    layers: dict[str, pl.LayerSpec] = {}
    t, program, eval_program, params = _translated(traced, torch_module, layers)
    batch, differs = _batch_size_fixed(torch_module, example_input, (program, eval_program))
    key_map, unused = keymap.build_key_map(torch_module, layers, params)
    full_map = key_map + tuple(KeyMapping(k, ("unused", unused_name(k)), s, lay) for k, s, lay in unused)

    origin = f"{type(torch_module).__module__}.{type(torch_module).__qualname__}"
    names = var_names(tuple(p for p in (program, eval_program) if p is not None))
    class_name = re.sub(r"\W", "_", type(torch_module).__name__)
    class_name = class_name if class_name.isidentifier() else "Ported"
    header = (f"{origin} ported to Flax NNX by parity.port (torch {torch.__version__}, "
              f"{datetime.date.today().isoformat()}); example input {tuple(example_input.shape)} NCHW.",
              "", "Runs with numpy, jax, flax and safetensors alone: `model = load()` reads model.safetensors "
              "beside", "this file (torch naming); `model(x_nhwc, key=key)` in train mode, `model.eval()` for "
              "inference;", "`save(model, path)` writes torch-named weights the original `load_state_dict`s.")
    src = Source(class_name, origin, program, eval_program, _tree(torch_module, layers, params),
                 tuple((m.torch_key, tuple(m.flax_path), m.torch_shape, m.layout) for m in key_map), unused,
                 _comments(traced, torch_module), batch, header)
    text = emit(src, names)

    folder = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="port_"))
    folder.mkdir(parents=True, exist_ok=True)
    source_path, weights_path = folder / "model.py", folder / "model.safetensors"
    source_path.write_text(text)
    save_safetensors(keymap.torch_tensors(torch_module), weights_path, {"format": "pt", "producer": "parity.port"})
    mod = import_source(source_path)
    module = mod.load(weights_path)
    module.train() if torch_module.training else module.eval()

    # A 4-D output in torch's own dim order (nn.LayerNorm after a permute to (N, H, W, C)) is not NCHW: the
    # layers family, which compares 4-D outputs as NCHW -> NHWC, leaves it to the forward family.
    torch_order = {op.target for op in program.ops if op.kind == "module" and op.layout == PLAIN
                   and t.values[op.out].rank == 4}
    pairs = tuple((p, tuple(p.split("."))) for p in layers if p not in torch_order)
    drops = tuple((p, tuple(p.split("."))) for p in layers if layers[p].cls == "Dropout")
    n_torch = sum(p.numel() for p in torch_module.parameters())
    notes = [("one graph for both modes (traced in train and in eval mode, the same); the ported module's "
              ".train()/.eval() switch BatchNorm and dropout") if eval_program is None else
             ("two graphs: the forward branches on self.training, so the port keeps forward_train and forward_eval "
              "and .train()/.eval() choose between them"), *t.notes]
    notes += [f"specialised: {s.how} of {s.node} at {s.where} is the constant {s.value} for this input shape"
              for s in traced.specialized]
    if batch is not None:
        notes.append(f"the program depends on the batch size (first at {differs}): it runs only with batch {batch}")
    if torch_order:
        notes.append(f"layers family: {len(torch_order)} layer(s) with a 4-D output in torch's own dim order (not "
                     f"NCHW, e.g. {sorted(torch_order)[0]}) are compared through the forward family only")
    if unused:
        notes.append(f"unused: {len(unused)} state_dict tensor(s) no ported op reads (a module forward never calls), "
                     f"kept under `unused` in model.py: {', '.join(k for k, _, _ in unused[:6])}"
                     + (" …" if len(unused) > 6 else ""))
    report = PortReport(type(torch_module).__qualname__, tuple(example_input.shape), tuple(t.rows), n_torch,
                        pl.count_params(module), len(full_map), tuple(notes), tuple(k for k, _, _ in unused))
    return PortResult(module, full_map, report, traced.train, pairs, drops, program, dict(layers), names,
                      source_path, weights_path, batch, unused)
