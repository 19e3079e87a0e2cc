"""The walk over the traced graph: each node to the rule that translates it, in graph order.

Apart from `translate.Translator` (the state and helpers the rules share) so that the rules import
the translator and this walk imports the rules, with no import cycle between them.
"""

from __future__ import annotations

from parity.port.function_rules import translate_call
from parity.port.module_rules import translate_module
from parity.port.program import NHWC, Program
from parity.port.translate import Translator, Value, torch_shape


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
            raise t.fail(f"reads the tensor attribute `{node.target}` directly in forward; only "
                         "parameters of supported modules are ported")
        elif node.op == "output":
            output = t.output(node.args[0])
    return Program(inputs[0], tuple(t.ops), output)
