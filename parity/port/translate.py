"""fx graph → `Program` plus NNX layers: walks the nodes once, tracking each value's layout.

Layout rule (the NCHW→NHWC change, handled in one place): every 4-D tensor is kept NHWC while
it flows through layout-aware ops (convs, BatchNorm, pooling, elementwise, cat, reductions whose
result order agrees); any op with torch-order semantics (view, flatten, permute, Linear on 4-D,
indexing…) gets its input transposed back to NCHW first and computes exactly as torch does.
Conversions are explicit ops, emitted once per value and layout, and listed in the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import fx

from parity.port.errors import PortError
from parity.port.program import META, NHWC, PLAIN, Op, Ref, SliceArg
from parity.port.report import PortRow

NCHW_TO_NHWC_AXIS = (0, 3, 1, 2)
"""Torch dim d of a 4-D tensor is axis NCHW_TO_NHWC_AXIS[d] of its NHWC storage."""


@dataclass(frozen=True)
class Value:
    """What the translator knows about one value: its program name, layout and torch shape.

    A tuple of tensors (`chunk`, `split`) has `shape` None and `items` the torch shapes of its
    elements, all stored in `layout`."""

    name: str
    layout: str
    shape: tuple[int, ...] | None  # torch layout; None for non-tensors
    items: tuple[tuple[int, ...], ...] | None = None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)


def concrete(node: Any) -> Any:
    """The value a traced node had on the example input (arguments that are not nodes are themselves)."""
    return node.meta.get("concrete") if isinstance(node, fx.Node) else node


def torch_shape(node: fx.Node) -> tuple[int, ...] | None:
    """The torch shape of the node's value on the example input (None if not a tensor)."""
    v = concrete(node)
    return tuple(v.shape) if isinstance(v, torch.Tensor) else None


def tensor_items(node: fx.Node) -> tuple[tuple[int, ...], ...] | None:
    """Torch shapes of a tuple-of-tensors value (a chunk or split), None for anything else."""
    v = concrete(node)
    if isinstance(v, (tuple, list)) and v and all(isinstance(x, torch.Tensor) for x in v):
        return tuple(tuple(x.shape) for x in v)
    return None


def scope_of(node: fx.Node) -> str:
    """The module path whose forward made this call (fx's nn_module_stack), '' for the root."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def where_of(node: fx.Node, root: torch.nn.Module) -> str:
    """'path (Type)' of the module that made this call, for error messages."""
    path = scope_of(node)
    module = root.get_submodule(path) if path else root
    return f"{path or '<root>'} ({type(module).__name__})"


def target_name(node: fx.Node) -> str:
    t = node.target
    if node.op == "call_method":
        return f"Tensor.{t}"
    if node.op == "call_module":
        return f"module {t}"
    mod = getattr(t, "__module__", None) or ""
    name = getattr(t, "__name__", str(t))
    if mod in ("_operator", "operator"):
        return f"operator.{name}"
    if mod.startswith(("torch.nn.functional", "torch._C._nn")):
        return f"F.{name}"
    if mod == "builtins":
        return name
    if mod.startswith("torch"):
        return f"torch.{name}"
    return f"{mod}.{name}"


class Translator:
    """Accumulates ops, layers and report rows; `walk.translate_graph` hands each node to a rule
    (module_rules, function_rules), which calls `emit`."""

    def __init__(self, gm: fx.GraphModule, root: torch.nn.Module, layers: dict[str, Any] | None = None):
        self.gm, self.root = gm, root
        self.ops: list[Op] = []
        self.values: dict[str, Value] = {}
        self.converted: dict[tuple[str, str], Value] = {}
        # torch module path -> NNX layer; shared by the train- and eval-mode translations of one port
        self.layers: dict[str, Any] = {} if layers is None else layers
        self.params: dict[str, Any] = {}  # torch path -> emit.Param: tensors forward reads directly
        self.counted: set[str] = set()  # module paths whose parameters a report row already counts
        self.rows: list[PortRow] = []
        self.notes: list[str] = []
        self.dropouts = 0
        self.randoms = 0  # random ops (functional dropout, rand, bernoulli) in program order
        self.node: fx.Node | None = None
        self.pending_note: str | None = None  # why the next layout conversion happens (for the report)

    # --- errors ---------------------------------------------------------------------------------
    def fail(self, what: str) -> PortError:
        return PortError(where_of(self.node, self.root) if self.node is not None else "", what)

    def note(self, text: str) -> None:
        """A parity trap met while translating, for the report (once each)."""
        if text not in self.notes:
            self.notes.append(text)

    # --- values -----------------------------------------------------------------------------------
    def value(self, node: Any) -> Value:
        if not isinstance(node, fx.Node):
            raise self.fail(f"expected a traced value, got {type(node).__name__}")
        return self.values[node.name]

    def is_tensor(self, a: Any) -> bool:
        return isinstance(a, fx.Node) and self.values[a.name].shape is not None

    def tensor(self, node: Any, layout: str) -> Ref:
        """A reference to `node`'s tensor in `layout`, emitting one transpose when it is stored otherwise."""
        v = self.value(node)
        if v.shape is None:
            raise self.fail(f"{node.name} is not a tensor")
        if layout == NHWC and v.rank != 4:
            raise self.fail(f"expects a 4-D (N, C, H, W) input, got shape {v.shape}")
        if v.layout == layout or v.rank != 4:
            return Ref(v.name)
        key = (v.name, layout)
        if key not in self.converted:
            kind = "to_nchw" if layout == PLAIN else "to_nhwc"
            out = f"{v.name}__{'nchw' if layout == PLAIN else 'nhwc'}"
            self.ops.append(Op(out, kind, (Ref(v.name),), layout=layout))
            self.converted[key] = Value(out, layout, v.shape)
            why = self.pending_note or (f"{target_name(self.node)} needs torch's dim order" if layout == PLAIN
                                        else f"{target_name(self.node)} runs on the NHWC layout")
            self.note(f"{kind} before {target_name(self.node)} at {scope_of(self.node) or '<root>'}: {why}")
            self.rows.append(PortRow(scope_of(self.node), f"(layout for {target_name(self.node)})",
                                     f"{kind}: {why}", 0, 0, v.shape))
        return Ref(self.converted[key].name)

    def static(self, a: Any) -> Any:
        """A non-tensor argument as program data: Refs for traced ints/shapes, hashable constants."""
        if isinstance(a, fx.Node):
            v = self.value(a)
            if v.shape is not None:
                raise self.fail(f"a tensor ({a.name}) where {target_name(self.node)} expects a static value")
            return Ref(v.name)
        if isinstance(a, (tuple, list)):
            return tuple(self.static(x) for x in a)
        if isinstance(a, slice):
            return SliceArg(self.static(a.start), self.static(a.stop), self.static(a.step))
        if a is None or a is Ellipsis or isinstance(a, (bool, int, float, str)):
            return a
        if isinstance(a, torch.Size):
            return tuple(a)
        raise self.fail(f"unsupported argument {a!r} ({type(a).__name__}) to {target_name(self.node)}")

    # --- emission ---------------------------------------------------------------------------------
    def emit(self, kind: str, args: tuple, kwargs: dict | None = None, *, layout: str, target: str = "",
             flax: str, torch_desc: str | None = None, params: tuple[int, int] = (0, 0),
             dropout: bool = False, random: bool = False, inplace_of: Any = None) -> Value:
        """Append one op for the current node and record its report row.

        `dropout`: the op takes a fold of the call's key; `random`: it is also a random site a parity
        check can feed fixed values (functional dropout, rand, bernoulli), numbered in program order."""
        node = self.node
        if isinstance(inplace_of, fx.Node) and inplace_of.op == "get_attr":
            raise self.fail(f"{target_name(node)} changes `{inplace_of.target}` in place: forward mutating a "
                            "parameter or buffer is not ported")
        index = rindex = -1
        if dropout or random:
            index, self.dropouts = self.dropouts, self.dropouts + 1
        if random:
            rindex, self.randoms = self.randoms, self.randoms + 1
        shape, items = torch_shape(node), tensor_items(node)
        layout = layout if shape is not None or items is not None else META
        self.ops.append(Op(node.name, kind, tuple(args), tuple(sorted((kwargs or {}).items())), target, layout, index,
                           rindex))
        v = Value(node.name, layout, shape, items)
        self.values[node.name] = v
        self.rows.append(PortRow(scope_of(node), torch_desc or target_name(node), flax, params[0], params[1], shape))
        if inplace_of is not None and isinstance(inplace_of, fx.Node):
            # Parity trap: torch mutates the input; later readers of it must see the result.
            self.values[inplace_of.name] = v
            if len(inplace_of.users) > 1:
                self.note(f"in-place {target_name(node)} at {scope_of(node) or '<root>'}: later readers of its "
                          "input read the result, as in torch")
            for key in [k for k in self.converted if k[0] == inplace_of.name]:
                del self.converted[key]
        return v

    def add_layer(self, path: str, make: Callable[[], Any]) -> Any:
        """The NNX layer for a torch module path, built once even when the module is called twice."""
        if path not in self.layers:
            self.layers[path] = make()
        return self.layers[path]

    def output(self, out: Any) -> Any:
        """The returned structure: 4-D tensors NHWC (the module's convention), others as torch has them."""
        if isinstance(out, fx.Node):
            v = self.value(out)
            if v.shape is None:
                return Ref(v.name)
            self.pending_note = "4-D outputs are returned NHWC"
            return self.tensor(out, NHWC) if v.rank == 4 else Ref(v.name)
        if isinstance(out, (tuple, list)):
            return tuple(self.output(o) for o in out)
        if isinstance(out, dict):
            if not all(isinstance(k, str) for k in out):
                raise self.fail("returns a dict with non-string keys; use string keys")
            return {k: self.output(v) for k, v in out.items()}
        return self.static(out)


def is_inplace_target(node: fx.Node) -> bool:
    return bool(node.kwargs.get("inplace")) or (node.op == "call_method" and str(node.target).endswith("_")
                                                and not str(node.target).startswith("__"))

