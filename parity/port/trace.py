"""torch.fx tracing plus shape propagation: the graph the port translates, every tensor's shape known.

The module is traced in train mode, so functional calls written `F.dropout(x, training=self.training)`
are recorded as live dropouts; the ported module's own train/eval switch then decides. It is traced
in eval mode too, to prove that is the only difference. Shapes come from one eval-mode, no-grad
run of the example input, so BatchNorm statistics are untouched.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import traceback

import torch
import torch.nn.functional as F
from torch import fx
from torch.fx.passes.shape_prop import ShapeProp

from parity.port.errors import PortError

_TORCH_DIR = os.path.dirname(torch.__file__)
_PORT_DIR = os.path.dirname(__file__)


def user_frame(exc: BaseException) -> str:
    """`file:line: code` of the innermost traceback frame outside torch and the port (the user's line)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith((_TORCH_DIR, _PORT_DIR))]
    if not frames:
        return ""
    f = frames[-1]
    return f" at {os.path.basename(f.filename)}:{f.lineno}: `{(f.line or '').strip()}`"


class _Tracer(fx.Tracer):
    """fx's default leaves (torch.nn modules except Sequential); a failure names the innermost module."""

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except PortError:
            raise
        except Exception as e:  # fx raises TraceError, TypeError, AttributeError… from user code
            raise _failure(self.path_of_module(m), type(m).__name__, e) from e


def _failure(path: str, type_name: str, e: Exception) -> PortError:
    kind = ("data-dependent control flow that torch.fx cannot trace"
            if "control flow" in str(e) or "iteration" in str(e) else "torch.fx cannot trace this forward")
    return PortError(f"{path} ({type_name})" if path else f"<root> ({type_name})",
                     f"{kind}{user_frame(e)} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")


class _ShapeProp(ShapeProp):
    """ShapeProp that remembers the node it is running, so a failure can name its module and op."""

    node: fx.Node | None = None

    def run_node(self, n: fx.Node):
        self.node = n
        return super().run_node(n)


def _modes(module: torch.nn.Module) -> dict[torch.nn.Module, bool]:
    return {m: m.training for m in module.modules()}


def _restore(modes: dict[torch.nn.Module, bool]) -> None:
    for m, training in modes.items():
        m.training = training


def _graph(module: torch.nn.Module, training: bool) -> fx.Graph:
    module.train(training)
    try:
        return _Tracer().trace(module)
    except PortError:
        raise
    except Exception as e:
        raise _failure("", type(module).__name__, e) from e


def _dropout_training(node: fx.Node):
    """The `training` argument of an F.dropout call (torch's default is True)."""
    return node.args[2] if len(node.args) > 2 else node.kwargs.get("training", True)


def _signature(node: fx.Node) -> str:
    """op, target and arguments (earlier nodes by name), without F.dropout's `training`."""
    args, kwargs = node.args, dict(node.kwargs)
    if node.target is F.dropout:
        args, _ = args[:2], kwargs.pop("training", None)
    return repr((node.op, node.target, fx.node.map_arg((args, kwargs), lambda n: n.name)))


def check_one_graph(train: fx.Graph, eval_: fx.Graph, module: torch.nn.Module) -> None:
    """Parity traps: a forward that branches on self.training has two graphs, the port has one; and
    F.dropout with training=True (torch's default) drops in eval mode too, which the port does not."""
    from parity.port.translate import target_name, where_of

    for a, b in itertools.zip_longest(train.nodes, eval_.nodes):
        if a is None or b is None or _signature(a) != _signature(b):
            node = a if a is not None else b
            raise PortError(where_of(node, module), f"the forward differs between train and eval mode at "
                            f"{target_name(node)} (a Python branch on self.training); the port needs one graph")
        if a.target is F.dropout and _dropout_training(b) is True:
            raise PortError(where_of(a, module), "F.dropout(training=True) drops in eval mode too; pass "
                            "training=self.training")


def trace(module: torch.nn.Module, example_input: torch.Tensor) -> fx.GraphModule:
    """A GraphModule over `module`'s own submodules, every node's `tensor_meta` filled in.

    Traced in both modes: the train-mode graph is kept, and must equal the eval-mode one.
    """
    modes = _modes(module)
    try:
        graph = _graph(module, True)
        check_one_graph(graph, _graph(module, False), module)
        gm = fx.GraphModule(module, graph)
        module.eval()
        prop = _ShapeProp(gm)
        try:
            # ShapeProp prints a traceback before re-raising; the PortError below says it in one line.
            with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
                prop.propagate(example_input)
        except Exception as e:
            from parity.port.translate import target_name, where_of

            cause, node = e.__cause__ or e, prop.node
            where = where_of(node, module) if node is not None else ""
            op = f" at {target_name(node) if node.op != 'call_module' else 'the module call'}" if node else ""
            raise PortError(where, f"the example input {tuple(example_input.shape)} does not run through the traced "
                            f"forward{op} ({type(cause).__name__}: {str(cause).splitlines()[0]})") from e
    finally:
        _restore(modes)
    return gm
