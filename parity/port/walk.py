"""The walk over the traced graph: each node to the rule that translates it, in graph order.

Apart from `translate.Translator` (the state and helpers the rules share) so that the rules import
the translator and this walk imports the rules, with no import cycle between them.
"""

from __future__ import annotations

import functools

from parity.port.function_rules import translate_call
from parity.port.module_rules import translate_module
from parity.port.emit import Param
from parity.port.program import NHWC, PLAIN, Program
from parity.port.translate import Translator, Value, torch_shape


def read_attribute(t: Translator, node) -> None:
    """A parameter or buffer forward reads directly (layer scale, a hand-written norm, a weight-standardised
    conv's weight): an ordinary value of the ported module, under its torch name, in torch's layout."""
    import torch

    path = str(node.target)
    value = functools.reduce(getattr, path.split("."), t.gm)
    if not isinstance(value, torch.Tensor):
        raise t.fail(f"reads `{path}`, a {type(value).__name__}; only tensors are ported")
    owner = path.rpartition(".")[0]
    if owner and any(owner == p or owner.startswith(p + ".") for p in t.layers):
        raise t.fail(f"reads `{path}`, a tensor of a layer it also calls; read it from a module that is not called")
    buffer = not isinstance(value, torch.nn.Parameter)
    if path not in dict(t.root.named_parameters()) and path not in dict(t.root.named_buffers()):
        raise t.fail(f"reads the tensor attribute `{path}`, neither a parameter nor a registered buffer: "
                     "register it (nn.Parameter or register_buffer) so its value travels with the weights")
    t.params[path] = Param(tuple(value.shape), buffer)
    t.emit("param", (), layout=PLAIN, target=path, flax=f"{'Buffer' if buffer else 'nnx.Param'} {path} (read in forward)",
           params=(0 if buffer else value.numel(),) * 2)


def translate_graph(t: Translator) -> Program:
    """The `Program` of `t`'s graph module; `t.layers`, `t.rows` and `t.notes` fill up on the way."""
    inputs, output = [], None
    for node in t.gm.graph.nodes:
        t.node, t.pending_note = node, None
        if node.op == "placeholder":
            shape = torch_shape(node)
            if inputs:
                raise t.fail(f"the forward takes a second input ({node.name}); the port takes one")
            if shape is None or len(shape) != 4:
                raise t.fail(f"the input must be a 4-D (N, C, H, W) tensor, got shape {shape}")
            t.values[node.name] = Value(node.name, NHWC, shape)
            inputs.append(node.name)
        elif node.op == "call_module":
            translate_module(t, node, t.gm.get_submodule(str(node.target)))
        elif node.op in ("call_function", "call_method"):
            translate_call(t, node)
        elif node.op == "get_attr":
            read_attribute(t, node)
        elif node.op == "output":
            output = t.output(node.args[0])
    return Program(inputs[0], tuple(t.ops), output)
