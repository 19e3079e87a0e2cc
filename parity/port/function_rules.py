"""torch functions and Tensor methods in a traced forward → program ops with the right layout.

Dims of 4-D ops (cat, mean/sum) are remapped to NHWC axes when the result's dim order agrees;
everything with torch-order semantics (view, reshape, flatten, permute, indexing, softmax) runs on
the NCHW layout — that is how the flatten-then-Linear trap is handled: the transpose sits right
before the flatten, so the Linear keeps torch's weight (transposed) and any head after it works.
"""

from __future__ import annotations

import builtins
import operator
from typing import Callable

import torch
import torch.nn.functional as F
from torch import fx

from parity.port.module_rules import _pair, adaptive_size
from parity.port.program import META, NHWC, PLAIN, Ref
from parity.port.translate import NCHW_TO_NHWC_AXIS, Translator, is_inplace_target, target_name

Rule = Callable[[Translator, fx.Node], None]
_UNSET = object()


def arg(node: fx.Node, i: int, name: str, default=_UNSET):
    """Positional argument i (the input is 0 for functions and methods alike) or keyword `name`."""
    if len(node.args) > i:
        return node.args[i]
    if name in node.kwargs:
        return node.kwargs[name]
    if default is _UNSET:
        raise TypeError(f"missing argument {name}")
    return default


def _inplace(t: Translator, node: fx.Node):
    return node.args[0] if is_inplace_target(node) else None


def unary(fn: str, options: tuple[tuple[str, int, object], ...] = ()) -> Rule:
    """An elementwise function: any layout, result in the input's layout."""
    def rule(t: Translator, node: fx.Node) -> None:
        x = node.args[0]
        kw = {name: arg(node, i, name, default) for name, i, default in options}
        layout = t.value(x).layout
        t.emit(fn, (t.tensor(x, layout),), kw, layout=layout, flax=fn, inplace_of=_inplace(t, node))
    return rule


def binary(fn: str) -> Rule:
    """Elementwise a ∘ b: NHWC when every non-scalar tensor operand is 4-D, torch layout otherwise."""
    def rule(t: Translator, node: fx.Node) -> None:
        a, b = arg(node, 0, "input"), arg(node, 1, "other")
        kw = {}
        alpha = node.kwargs.get("alpha", 1)
        if alpha != 1:
            kw["alpha"] = t.static(alpha)
        if node.kwargs.get("rounding_mode") is not None:
            raise t.fail(f"{target_name(node)}(rounding_mode=...) is not ported")
        tensors = [x for x in (a, b) if t.is_tensor(x)]
        if not tensors:
            t.emit(fn, (t.static(a), t.static(b)), kw, layout=META, flax=f"{fn} (Python numbers)")
            return
        ranks = {t.value(x).rank for x in tensors} - {0}
        layout = NHWC if ranks == {4} else PLAIN
        refs = tuple(t.tensor(x, layout) if t.is_tensor(x) else t.static(x) for x in (a, b))
        t.emit(fn, refs, kw, layout=layout, flax=fn, inplace_of=_inplace(t, node))
    return rule


def _cat(t: Translator, node: fx.Node) -> None:
    xs, dim = arg(node, 0, "tensors"), arg(node, 1, "dim", 0)
    ranks = {t.value(x).rank for x in xs}
    if ranks == {4}:
        refs = tuple(t.tensor(x, NHWC) for x in xs)
        t.emit("cat", (refs,), {"axis": NCHW_TO_NHWC_AXIS[dim % 4]}, layout=NHWC, flax="jnp.concatenate (NHWC axis)")
    else:
        t.emit("cat", (tuple(t.tensor(x, PLAIN) for x in xs),), {"axis": dim}, layout=PLAIN, flax="jnp.concatenate")


def _reduce(fn: str) -> Rule:
    """mean/sum over dims: NHWC when the kept dims come out in torch's order, else on NCHW."""
    def rule(t: Translator, node: fx.Node) -> None:
        x = node.args[0]
        dim, keepdim = arg(node, 1, "dim", None), bool(arg(node, 2, "keepdim", False))
        if node.kwargs.get("dtype") is not None:
            raise t.fail(f"{target_name(node)}(dtype=...) is not ported")
        v = t.value(x)
        dims = None if dim is None else tuple(int(d) for d in ((dim,) if isinstance(dim, int) else dim))
        if v.rank == 4 and v.layout == NHWC:
            norm = set(range(4)) if dims is None else {d % 4 for d in dims}
            kept_torch = [d for d in (0, 1, 2, 3) if d not in norm]
            kept_nhwc = [d for d in (0, 2, 3, 1) if d not in norm]
            if keepdim or kept_torch == kept_nhwc:
                axes = tuple(sorted(NCHW_TO_NHWC_AXIS[d] for d in norm))
                out = NHWC if keepdim else PLAIN
                t.emit(fn, (t.tensor(x, NHWC),), {"axis": axes, "keepdims": keepdim}, layout=out,
                       flax=f"jnp.{fn} over NHWC axes {axes}")
                return
        t.emit(fn, (t.tensor(x, PLAIN),), {"axis": dims, "keepdims": keepdim}, layout=PLAIN, flax=f"jnp.{fn}")
    return rule


def _plain(fn: str, arg_names: tuple[str, ...], flax: str | None = None, note: str | None = None) -> Rule:
    """A torch-order op: input transposed to NCHW, other arguments static (ints, or traced sizes)."""
    def rule(t: Translator, node: fx.Node) -> None:
        t.pending_note = note
        x = node.args[0]
        rest = tuple(t.static(a) for a in node.args[1:])
        kw = {k: t.static(v) for k, v in node.kwargs.items() if k in arg_names}
        unknown = set(node.kwargs) - set(arg_names) - {"input"}
        if unknown:
            raise t.fail(f"{target_name(node)} with keyword(s) {sorted(unknown)} is not ported")
        t.emit(fn, (t.tensor(x, PLAIN), *rest), kw, layout=PLAIN, flax=flax or fn)
    return rule


def _flatten(t: Translator, node: fx.Node) -> None:
    t.pending_note = "flatten-then-Linear trap: flatten in torch's C,H,W order"
    x = node.args[0]
    start, end = arg(node, 1, "start_dim", 0), arg(node, 2, "end_dim", -1)
    t.emit("flatten", (t.tensor(x, PLAIN), start, end), layout=PLAIN, flax="flatten (on NCHW)")


def _view(t: Translator, node: fx.Node) -> None:
    t.pending_note = "view/reshape in torch's C,H,W order (the flatten-then-Linear trap)"
    x = node.args[0]
    shape = node.args[1:] if node.op == "call_method" else (arg(node, 1, "shape"),)
    if any(isinstance(s, torch.dtype) for s in shape):
        raise t.fail("Tensor.view(dtype) is not ported")
    t.emit("reshape", (t.tensor(x, PLAIN), *(t.static(s) for s in shape)), layout=PLAIN, flax="jnp.reshape (on NCHW)")


def _size(t: Translator, node: fx.Node) -> None:
    x = node.args[0]
    v = t.value(x)
    dim = arg(node, 1, "dim", None)
    t.emit("size", (Ref(v.name), t.static(dim)), {"layout": v.layout}, layout=META,
           flax="shape in torch's dim order")


def _getattr(t: Translator, node: fx.Node) -> None:
    x, name = node.args
    if name != "shape" or not t.is_tensor(x):
        raise t.fail(f"reads `.{name}` of a value; only `.shape` is ported")
    v = t.value(x)
    t.emit("size", (Ref(v.name), None), {"layout": v.layout}, layout=META, flax="shape in torch's dim order")


def _getitem(t: Translator, node: fx.Node) -> None:
    obj, idx = node.args
    if t.is_tensor(obj):
        t.emit("getitem", (t.tensor(obj, PLAIN), t.static(idx)), layout=PLAIN, flax="indexing (on NCHW)")
    else:
        t.emit("getitem", (t.static(obj), t.static(idx)), layout=META, flax="indexing")


def _pad(t: Translator, node: fx.Node) -> None:
    x, pad = node.args[0], arg(node, 1, "pad")
    mode, value = arg(node, 2, "mode", "constant"), arg(node, 3, "value", None)
    if mode != "constant":
        raise t.fail(f"F.pad(mode={mode!r}) is not ported (only 'constant')")
    v = t.value(x)
    pad = [int(p) for p in pad]
    widths = [(0, 0)] * v.rank
    for i in range(len(pad) // 2):  # torch lists the last dim first
        widths[v.rank - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    layout = v.layout
    if layout == NHWC:
        widths = [widths[d] for d in (0, 2, 3, 1)]
    t.emit("pad", (t.tensor(x, layout), tuple(widths), float(value or 0.0)), layout=layout,
           flax="lax.pad (per side, negative crops)")


def _dropout(t: Translator, node: fx.Node) -> None:
    x = node.args[0]
    p, training = float(arg(node, 1, "p", 0.5)), arg(node, 2, "training", True)
    layout = t.value(x).layout
    if not training:  # traced in train mode: a literal False means "never drop"
        t.emit("identity", (t.tensor(x, layout),), layout=layout, flax="identity (training=False)")
        return
    t.emit("dropout", (t.tensor(x, layout),), {"rate": p}, layout=layout, dropout=True,
           flax="flax_cnn.layers.Dropout (explicit key; the ported module's train/eval)", inplace_of=_inplace(t, node))


def _pool(fn: str) -> Rule:
    def rule(t: Translator, node: fx.Node) -> None:
        x = node.args[0]
        k = _pair(arg(node, 1, "kernel_size"))
        stride = arg(node, 2, "stride", None)
        stride = k if stride is None or stride == [] or stride == () else _pair(stride)
        padding = _pair(arg(node, 3, "padding", 0))
        if fn == "max_pool2d":
            if arg(node, 6, "return_indices", False):
                raise t.fail("F.max_pool2d(return_indices=True) is not ported")
            kw = {"dilation": _pair(arg(node, 4, "dilation", 1)), "ceil_mode": bool(arg(node, 5, "ceil_mode", False))}
        else:
            kw = {"ceil_mode": bool(arg(node, 4, "ceil_mode", False)),
                  "count_include_pad": bool(arg(node, 5, "count_include_pad", True)),
                  "divisor_override": arg(node, 6, "divisor_override", None)}
        t.emit(fn, (t.tensor(x, NHWC), k, stride, padding), kw, layout=NHWC,
               flax=f"parity.port.pooling.{fn} (torch windows)")
    return rule


def _adaptive_avg(t: Translator, node: fx.Node) -> None:
    x, size = node.args[0], adaptive_size(arg(node, 1, "output_size"))
    t.emit("adaptive_avg_pool2d", (t.tensor(x, NHWC), size), layout=NHWC,
           flax="parity.port.pooling.adaptive_avg_pool2d (torch bins)")


def _softmax(fn: str) -> Rule:
    def rule(t: Translator, node: fx.Node) -> None:
        x, dim = node.args[0], arg(node, 1, "dim", None)
        if dim is None or node.kwargs.get("dtype") is not None:
            raise t.fail(f"{target_name(node)} needs an explicit dim and no dtype")
        t.emit(fn, (t.tensor(x, PLAIN),), {"axis": int(dim)}, layout=PLAIN, flax=f"jax.nn.{fn}")
    return rule


def _same(fn: str) -> Rule:
    def rule(t: Translator, node: fx.Node) -> None:
        x = node.args[0]
        layout = t.value(x).layout
        t.emit(fn, (t.tensor(x, layout),), layout=layout, flax=fn)
    return rule


_ACT = {
    "relu": (), "relu6": (), "silu": (), "sigmoid": (), "tanh": (), "hardswish": (), "hardsigmoid": (),
    "leaky_relu": (("negative_slope", 1, 0.01),), "gelu": (("approximate", 1, "none"),),
}

FUNCTION_RULES: dict[object, Rule] = {
    F.relu: unary("relu"), torch.relu: unary("relu"), torch.relu_: unary("relu"), F.relu6: unary("relu6"),
    F.leaky_relu: unary("leaky_relu", _ACT["leaky_relu"]), F.gelu: unary("gelu", _ACT["gelu"]),
    F.silu: unary("silu"), torch.sigmoid: unary("sigmoid"), F.sigmoid: unary("sigmoid"),
    torch.tanh: unary("tanh"), F.tanh: unary("tanh"), F.hardswish: unary("hardswish"),
    F.hardsigmoid: unary("hardsigmoid"),
    operator.add: binary("add"), operator.iadd: binary("add"), torch.add: binary("add"),
    operator.sub: binary("sub"), operator.isub: binary("sub"), torch.sub: binary("sub"),
    operator.mul: binary("mul"), operator.imul: binary("mul"), torch.mul: binary("mul"),
    operator.truediv: binary("div"), operator.itruediv: binary("div"), torch.div: binary("div"),
    operator.neg: _same("neg"), torch.neg: _same("neg"),
    torch.cat: _cat, torch.concat: _cat, torch.concatenate: _cat,
    torch.flatten: _flatten, torch.reshape: _view,
    torch.mean: _reduce("mean"), torch.sum: _reduce("sum"),
    torch.permute: _plain("permute", ("dims",)), torch.transpose: _plain("transpose", ("dim0", "dim1")),
    operator.getitem: _getitem, builtins.getattr: _getattr,
    F.pad: _pad, F.dropout: _dropout,
    F.max_pool2d: _pool("max_pool2d"), F.avg_pool2d: _pool("avg_pool2d"), F.adaptive_avg_pool2d: _adaptive_avg,
    F.softmax: _softmax("softmax"), torch.softmax: _softmax("softmax"),
    F.log_softmax: _softmax("log_softmax"), torch.log_softmax: _softmax("log_softmax"),
}

METHOD_RULES: dict[str, Rule] = {
    **{name: unary(name, _ACT[name]) for name in ("relu", "sigmoid", "tanh")},
    "relu_": unary("relu"), "sigmoid_": unary("sigmoid"), "tanh_": unary("tanh"),
    "add": binary("add"), "add_": binary("add"), "sub": binary("sub"), "sub_": binary("sub"),
    "mul": binary("mul"), "mul_": binary("mul"), "div": binary("div"), "div_": binary("div"),
    "neg": _same("neg"),
    "flatten": _flatten, "view": _view, "reshape": _view, "size": _size,
    "mean": _reduce("mean"), "sum": _reduce("sum"),
    "permute": _plain("permute", ("dims",)), "transpose": _plain("transpose", ("dim0", "dim1")),
    "contiguous": _same("identity"), "clone": _same("identity"), "detach": _same("stop_gradient"),
    "softmax": _softmax("softmax"), "log_softmax": _softmax("log_softmax"),
}


def translate_call(t: Translator, node: fx.Node) -> None:
    if node.op == "call_method":
        rule = METHOD_RULES.get(str(node.target))
    else:
        try:
            rule = FUNCTION_RULES.get(node.target)
        except TypeError:  # an unhashable target
            rule = None
    if rule is None:
        raise t.fail(f"unsupported op {target_name(node)} (parity.port.supported() lists what ports)")
    try:
        rule(t, node)
    except TypeError as e:
        raise t.fail(f"{target_name(node)}: {e}") from None
