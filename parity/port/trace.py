"""Concrete-value torch.fx tracing: the graph the port translates, every value known.

Symbolic tracing alone cannot follow what published CNNs do with shapes: `int(x.size(1) * r)`,
`range(len(xs))`, `if x.size(1) != planes:`, a kernel taken from `out.size(3)`. Here every node
is also *run* on the example input as it is recorded (`node.meta["concrete"]`), so Python may
take an int, a bool or a length out of a traced value: the trace then continues with the concrete
value, and the port is specialised to it (listed in `Traced.specialized`). Shape queries that feed
torch ops stay symbolic (`x.view(x.size(0), -1)` ports for any batch size); `build.port` traces a
second batch size to find out whether a specialisation depends on the batch. A Python branch on a
tensor's *values* stays untraceable: a PortError.

The forward is traced in train and in eval mode: a branch on `self.training` (a dropout or a
drop-connect only in training, an auxiliary head) gives two graphs, and the port keeps both.
Leaf modules run in eval mode while tracing, and the module's state and torch's RNG are restored
afterwards, so tracing changes no BatchNorm statistic and draws no random number the caller sees.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import functools
import operator
import os
import re
import traceback
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import fx
from torch.fx import _symbolic_trace
from torch.fx.proxy import Attribute

from parity.port.errors import PortError
from parity.port.translate import concrete, target_name, where_of

_TORCH_DIR = os.path.dirname(torch.__file__)
_PORT_DIR = os.path.dirname(__file__)

FACTORIES = ("rand", "randn", "zeros", "ones", "empty", "full")
"""torch factory functions that take sizes, not tensors (no __torch_function__ dispatch on a traced
size): wrapped during tracing so `torch.rand(x.size(0), 1, 1, 1)` is recorded, not evaluated."""


def user_frame(exc: BaseException | None = None) -> str:
    """`file:line: code` of the innermost frame outside torch and the port (the user's line): of the
    exception's traceback, or of the current stack."""
    stack = traceback.extract_tb(exc.__traceback__) if exc is not None else traceback.extract_stack()
    frames = [f for f in stack if not f.filename.startswith((_TORCH_DIR, _PORT_DIR))]
    if not frames:
        return ""
    f = frames[-1]
    return f" at {os.path.basename(f.filename)}:{f.lineno}: `{(f.line or '').strip()}`"


def user_line(node: fx.Node) -> str:
    """`file:line` of the innermost user frame that made `node` (from its recorded stack trace)."""
    lines = (node.stack_trace or "").splitlines()
    found = ""
    for line in lines:
        m = _FRAME.match(line.strip())
        if m and not m.group(1).startswith((_TORCH_DIR, _PORT_DIR)):
            found = f"{os.path.basename(m.group(1))}:{m.group(2)}"
    return found


_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


class ConcreteProxy(fx.Proxy):
    """A Proxy that knows its value: Python conversions (int, bool, len, iteration) use it."""

    @property
    def concrete(self) -> Any:
        return self.node.meta["concrete"]

    def __getattr__(self, k: str) -> ConcreteAttribute:
        return ConcreteAttribute(self, k)

    def __len__(self) -> int:
        return len(self.tracer.specialize(self, "len()"))

    def __int__(self) -> int:
        return int(self.tracer.specialize(self, "int()"))

    def __index__(self) -> int:
        return int(self.tracer.specialize(self, "an index"))

    def __float__(self) -> float:
        return float(self.tracer.specialize(self, "float()"))


class ConcreteAttribute(ConcreteProxy, Attribute):
    """`x.shape`, `x.device`, `x.dtype`, and method calls, with the value known like any other proxy."""


@dataclass(frozen=True)
class Specialization:
    """A traced value Python used as a constant: the port computes with `value` from here on."""

    where: str
    node: str
    how: str
    value: str


class _Tracer(fx.Tracer):
    """fx's default leaves (torch.nn modules except Sequential), each node run as it is recorded."""

    def __init__(self, root: torch.nn.Module, example: torch.Tensor):
        super().__init__()
        self.user_root, self.example = root, example
        self.record_stack_traces = True  # each node's user source line, for the emitted model's comments
        self.specialized: list[Specialization] = []

    def proxy(self, node: fx.Node) -> ConcreteProxy:
        return ConcreteProxy(node, self)

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None) -> fx.Node:
        node = super().create_node(kind, target, args, kwargs, name, type_expr)
        if kind != "output":
            value = fx.node.map_arg((node.args, node.kwargs), concrete)
            try:
                with _symbolic_trace._maybe_revert_all_patches():  # run plain torch, not the tracer's patches
                    node.meta["concrete"] = self._run(kind, target, *value)
            except PortError:
                raise
            except Exception as e:
                raise self._input_error(node, e) from e
        return node

    def _run(self, kind: str, target, args: tuple, kwargs: dict):
        if kind == "placeholder":
            return self.example
        if kind == "get_attr":
            return functools.reduce(getattr, target.split("."), self.root)
        if kind == "call_module":
            with _eval_mode(self.root.get_submodule(target)) as m:
                return m(*args, **kwargs)
        if kind == "call_method":
            return getattr(args[0], target)(*args[1:], **kwargs)
        return target(*args, **kwargs)

    def _input_error(self, node: fx.Node, e: Exception) -> PortError:
        cause = e.__cause__ or e
        op = "the module call" if node.op == "call_module" else target_name(node)
        return PortError(where_of(node, self.user_root), f"the example input {tuple(self.example.shape)} does not "
                         f"run through the forward at {op} ({type(cause).__name__}: {str(cause).splitlines()[0]})")

    def specialize(self, proxy: ConcreteProxy, how: str) -> Any:
        """The value of `proxy` for Python to use as a constant; refused for a tensor's data."""

        value = proxy.concrete
        if isinstance(value, torch.Tensor) and how != "len()":
            raise PortError(where_of(proxy.node, self.user_root),
                            f"data-dependent control flow{user_frame()}: Python takes {how} of a tensor's values "
                            f"({proxy.node.name}); the port needs the same ops for every input")
        self.specialized.append(Specialization(where_of(proxy.node, self.user_root), proxy.node.name, how,
                                               repr(len(value) if how == "len()" else value)))
        return value

    def to_bool(self, obj: ConcreteProxy) -> bool:
        return bool(self.specialize(obj, "a bool (an if/while/assert)"))

    def iter(self, obj: ConcreteProxy) -> Iterator:
        return iter([obj[i] for i in range(len(obj))])

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except PortError:
            raise
        except Exception as e:  # fx raises TraceError, TypeError, AttributeError… from user code
            raise _failure(self.path_of_module(m), type(m).__name__, e) from e

    def trace(self, root, concrete_args=None) -> fx.Graph:
        with _factories_recorded(self):
            return super().trace(root, concrete_args)


@contextlib.contextmanager
def _eval_mode(m: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """A leaf module in eval mode for one concrete call: no BatchNorm update, no dropout draw, and
    batch-1 examples run (train-mode BatchNorm refuses one value per channel). Shapes do not change."""
    modes = _modes(m)
    m.eval()
    try:
        yield m
    finally:
        _restore(modes)


@contextlib.contextmanager
def _factories_recorded(tracer: _Tracer) -> Iterator[None]:
    originals = {name: getattr(torch, name) for name in FACTORIES}

    def recorded(fn):
        def call(*args, **kwargs):
            traced = []
            fx.node.map_aggregate((args, kwargs), lambda a: traced.append(a) if isinstance(a, fx.Proxy) else None)
            return tracer.create_proxy("call_function", fn, args, kwargs) if traced else fn(*args, **kwargs)
        return call

    try:
        for name, fn in originals.items():
            setattr(torch, name, recorded(fn))
        yield
    finally:
        for name, fn in originals.items():
            setattr(torch, name, fn)


def _failure(path: str, type_name: str, e: Exception) -> PortError:
    kind = ("data-dependent control flow that torch.fx cannot trace"
            if "control flow" in str(e) or "iteration" in str(e) else "torch.fx cannot trace this forward")
    return PortError(f"{path} ({type_name})" if path else f"<root> ({type_name})",
                     f"{kind}{user_frame(e)} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")


def _modes(module: torch.nn.Module) -> dict[torch.nn.Module, bool]:
    return {m: m.training for m in module.modules()}


def _restore(modes: dict[torch.nn.Module, bool]) -> None:
    for m, training in modes.items():
        m.training = training


_PURE_METHODS = frozenset({"size", "dim", "chunk", "split", "unbind", "contiguous", "view", "reshape", "flatten",
                           "permute", "transpose", "float", "double", "type_as", "to"})
_PURE_FUNCTIONS = frozenset({operator.getitem, operator.add, operator.sub, operator.mul, operator.truediv,
                             operator.floordiv, operator.mod, operator.neg, operator.pow, operator.lt, operator.le,
                             operator.gt, operator.ge, operator.eq, operator.ne, builtins.getattr, torch.chunk,
                             torch.split, torch.flatten, torch.reshape})


def _dead_code_removed(graph: fx.Graph) -> None:
    """Drop unused pure nodes (a shape read only to specialise, an unused chunk half): nothing to translate.

    Module calls stay even if unused (their parameters belong to the port), and so does anything
    in-place or random."""
    changed = True
    while changed:
        changed = False
        for node in reversed(list(graph.nodes)):
            pure = (node.op == "call_method" and node.target in _PURE_METHODS) or (
                node.op == "call_function" and node.target in _PURE_FUNCTIONS)
            if not node.users and pure:
                graph.erase_node(node)
                changed = True


@dataclass(frozen=True)
class Traced:
    """The train-mode and eval-mode graphs (one object when they are the same) and what was specialised."""

    train: fx.GraphModule
    eval: fx.GraphModule
    specialized: tuple[Specialization, ...]

    @property
    def same_in_both_modes(self) -> bool:
        return self.train is self.eval


def _signature(node: fx.Node) -> str:
    """op, target and arguments (earlier nodes by name), without F.dropout's `training`: the ported
    dropout follows the module's own train/eval switch, so that difference needs no second graph."""
    args, kwargs = node.args, dict(node.kwargs)
    if node.target is F.dropout:
        args, _ = args[:2], kwargs.pop("training", None)
    return repr((node.op, node.target, fx.node.map_arg((args, kwargs), lambda n: n.name)))


def _same_graph(a: fx.Graph, b: fx.Graph) -> bool:
    na, nb = list(a.nodes), list(b.nodes)
    return len(na) == len(nb) and all(_signature(x) == _signature(y) for x, y in zip(na, nb))


def _graph(module: torch.nn.Module, example: torch.Tensor, training: bool) -> tuple[fx.GraphModule, list]:
    module.train(training)
    tracer = _Tracer(module, example)
    try:
        graph = tracer.trace(module)
    except PortError:
        raise
    except Exception as e:
        raise _failure("", type(module).__name__, e) from e
    _dead_code_removed(graph)
    alive = {n.name for n in graph.nodes}
    # an index Python took only in passing (torch's argument parser asks, then records the node) bakes nothing in
    specialized = [s for s in tracer.specialized if s.how != "an index" or s.node not in alive]
    return fx.GraphModule(module, graph), specialized


def check_eval_dropout(gm: fx.GraphModule, module: torch.nn.Module) -> None:
    """Parity trap: `F.dropout` at torch's default `training=True` drops in eval mode too — a bug the
    port will not reproduce silently."""

    for node in gm.graph.nodes:
        if node.target is F.dropout:
            training = node.args[2] if len(node.args) > 2 else node.kwargs.get("training", True)
            if concrete(training) is True:
                raise PortError(where_of(node, module), "F.dropout(training=True) drops in eval mode too; pass "
                                "training=self.training")


def trace(module: torch.nn.Module, example_input: torch.Tensor) -> Traced:
    """Both modes' GraphModules over `module`'s own submodules, every node's value on `example_input` known."""
    modes = _modes(module)
    state = copy.deepcopy(module.state_dict())
    rng = torch.get_rng_state()
    try:
        with torch.no_grad():
            train, spec_t = _graph(module, example_input, True)
            eval_, spec_e = _graph(module, example_input, False)
        check_eval_dropout(eval_, module)
    finally:
        _restore(modes)
        module.load_state_dict(state)
        torch.set_rng_state(rng)
    same = _same_graph(train.graph, eval_.graph)
    seen, specialized = set(), []
    for s in spec_t + spec_e:
        if (s.where, s.node, s.how) not in seen:
            seen.add((s.where, s.node, s.how))
            specialized.append(s)
    return Traced(train, train if same else eval_, tuple(specialized))
