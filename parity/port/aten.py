"""Modules with no rule, lowered op by op through torch's own decompositions to the Core ATen opset.

`translate_opaque` runs a leaf module that `module_rules` does not know through `make_fx` with
`core_aten_decompositions()` (its parameters and buffers passed in by `functional_call`, so they are
graph inputs), functionalizes the result (in-place ops on intermediates become plain ops), and
translates each ATen node with `ATEN_RULES`, keyed by overload name ("aten.add.Tensor"). Inside
the lowered module every value is in torch's own dim order (PLAIN); the module's parameters and
buffers are ordinary values read in forward, under their torch paths, as `walk.read_attribute`
makes them. What stays impossible is a PortError naming the module path and the ATen op: an op
with no rule, a random op, an update of a buffer (BatchNorm-style running statistics), or a lowering
that differs between train and eval mode (the fx graph around a leaf is the same in both modes).

Shapes are those of the example input, except sizes that follow the batch: the module is lowered at
two more batch sizes, and a size argument (a view's, an expand's, a full's) that is a * batch + b at
all three becomes that expression of the input's batch, so a lowered view does not tie the port to
the example's batch. Any other difference stays a constant, and `build.port` states the tie.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable

import torch
from torch import fx

from parity.port.emit import Param
from parity.port.program import PLAIN, Ref
from parity.port.translate import Translator, Value, concrete

Rule = Callable[[Translator, fx.Node, dict], None]

_FLOATS = {torch.float16, torch.bfloat16, torch.float32, torch.float64}
_RANDOM = ("bernoulli", "rand", "randn", "randint", "randperm", "normal", "uniform", "exponential", "geometric",
           "multinomial", "native_dropout", "rrelu", "poisson", "cauchy", "log_normal")
MAX_CONSTANT = 4096
"""Largest tensor constant (elements) a lowering may capture into model.py as a literal."""


# --- the Core ATen opset -------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def core_ops() -> tuple[str, ...]:
    """Every overload torch tags `core` (the opset torch.export's decompositions target), sorted."""
    out = []
    for name in dir(torch.ops.aten):
        packet = getattr(torch.ops.aten, name)
        if not isinstance(packet, torch._ops.OpOverloadPacket):
            continue
        for overload in packet.overloads():
            op = getattr(packet, overload)
            if torch.Tag.core in op.tags:
                out.append(str(op))
    return tuple(sorted(set(out)))


def coverage() -> tuple[int, int, list[str]]:
    """(Core ATen overloads with a rule, Core ATen overloads in total, the ones without a rule)."""
    core = core_ops()
    missing = [op for op in core if op not in ATEN_RULES]
    return len(core) - len(missing), len(core), missing


# --- lowering --------------------------------------------------------------------------------------

class _Recorder(fx.Interpreter):
    """Runs the lowered graph on the concrete inputs, keeping every node's value."""

    def run_node(self, n: fx.Node) -> Any:
        value = super().run_node(n)
        n.meta["concrete"] = value
        return value


def decompositions() -> dict:
    """torch's own decompositions to the Core ATen opset (`torch._decomp.core_aten_decompositions()`)."""
    from torch._decomp import core_aten_decompositions

    return core_aten_decompositions()


def _lower(m: torch.nn.Module, state: list[tuple[str, torch.Tensor]], inputs: list[torch.Tensor],
           rebuild: Callable[[list], tuple[tuple, dict]], training: bool) -> fx.GraphModule:
    from torch.fx.experimental.proxy_tensor import make_fx

    names = [n for n, _ in state]

    def call(*flat):
        args, kwargs = rebuild(list(flat[len(names):]))
        return torch.func.functional_call(m, dict(zip(names, flat[:len(names)])), args, kwargs)

    flat = [v for _, v in state] + inputs
    was = {sub: sub.training for sub in m.modules()}
    rng = torch.get_rng_state()
    try:
        m.train(training)
        with torch.no_grad():
            table = decompositions()
            gm = make_fx(call, decomposition_table=table)(*flat)
            # decompositions may write into their own intermediates (add_, clamp_min_): functionalize
            gm = make_fx(torch.func.functionalize(gm, remove="mutations"), decomposition_table=table)(*flat)
            gm.graph.eliminate_dead_code()
            _Recorder(gm).run(*flat)
    finally:
        for sub, mode in was.items():
            sub.training = mode
        torch.set_rng_state(rng)
    return gm


def _signature(gm: fx.GraphModule) -> list[str]:
    return [_signature_of(n) for n in gm.graph.nodes]


def _aten_name(n: fx.Node) -> str:
    return str(n.target) if isinstance(n.target, torch._ops.OpOverload) else getattr(n.target, "__name__", str(n.target))


def _refuse_impossible(t: Translator, m: torch.nn.Module, gm: fx.GraphModule, state_names: list[str], path: str,
                       mode: str) -> None:
    """PortErrors for what no rule can port: random ops and writes into the module's own tensors."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for n in gm.graph.nodes:
        if n.op != "call_function":
            continue
        name = _aten_name(n)
        base = name.split(".")[1] if name.startswith("aten.") else name
        if any(base.startswith(r) for r in _RANDOM) and not (base == "native_dropout" and not _train_flag(n)):
            raise _refuse(t, m, f"has the random op {name} in {mode} mode (random ops inside a module with no "
                                "rule are not ported)")
        if base.endswith("_") or name == "aten.copy_.default":
            target = n.args[0] if n.args else None
            what = "an input"
            if isinstance(target, fx.Node) and target in placeholders:
                i = placeholders.index(target)
                if i >= len(state_names) and name == "aten.copy_.default":
                    continue  # an in-place module (inplace=True) writing its result into its input: ported
                what = f"`{path}.{state_names[i]}`" if i < len(state_names) else "its input"
            raise _refuse(t, m, f"updates {what} in place in {mode} mode ({name}); a forward mutating a "
                                "parameter, buffer or input is not ported")


def _train_flag(n: fx.Node) -> bool:
    return bool(n.args[2] if len(n.args) > 2 else n.kwargs.get("train", True))


def translate_opaque(t: Translator, node: fx.Node, m: torch.nn.Module) -> None:
    """The leaf module call `node` (of `m`, a module with no rule), lowered to Core ATen and translated
    op by op in torch's dim order; its result is the node's value (PLAIN)."""
    path = str(node.target)
    # copies: the lowering runs the module for real, and a refused train-mode update must not reach its buffers
    state = [(n, p.detach().clone()) for n, p in m.named_parameters()] + \
        [(n, b.detach().clone()) for n, b in m.named_buffers()]
    buffers = {n for n, _ in m.named_buffers()}
    tensor_nodes: list[fx.Node] = []

    def mark(a):
        if isinstance(a, fx.Node) and isinstance(concrete(a), torch.Tensor):
            tensor_nodes.append(a)
            return ("__input__", len(tensor_nodes) - 1)
        if isinstance(a, fx.Node):
            value = concrete(a)
            held: list = []
            fx.node.map_aggregate(value, lambda v: held.append(v) if isinstance(v, torch.Tensor) else None)
            if held:
                raise _refuse(t, m, f"is not tried: the call passes {a.name}, a {type(value).__name__} of tensors "
                                    "(pass the tensors as separate arguments)")
            return value
        return a

    template = fx.node.map_aggregate((tuple(node.args), dict(node.kwargs)), mark)

    def rebuild(xs: list) -> tuple[tuple, dict]:
        def put(a):
            if isinstance(a, tuple) and len(a) == 2 and a[0] == "__input__":
                return xs[a[1]]
            if isinstance(a, (tuple, list)):
                return type(a)(put(b) for b in a)
            if isinstance(a, dict):
                return {k: put(v) for k, v in a.items()}
            return a
        return put(template[0]), put(template[1])

    inputs = [concrete(a) for a in tensor_nodes]
    state_names = [n for n, _ in state]
    graphs = {}
    for training in (True, False):
        try:
            graphs[training] = _lower(m, state, inputs, rebuild, training)
        except Exception as e:  # make_fx or a decomposition refuses the module
            raise _refuse(t, m, f"does not lower to Core ATen ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''})") from e
        _refuse_impossible(t, m, graphs[training], state_names, path, "train" if training else "eval")
    for training in (False, True):  # an op with no rule is the first thing to name
        for n in graphs[training].graph.nodes:
            if n.op == "call_function" and n.target is not operator.getitem and _aten_name(n) not in ATEN_RULES \
                    and _aten_name(n) != "aten.copy_.default":
                raise _refuse(t, m, f"needs the ATen op {_aten_name(n)}, which has no rule (parity.port.aten)")
    if _signature(graphs[True]) != _signature(graphs[False]):
        first = next((f"{_aten_name(a)} / {_aten_name(b)}" for a, b in zip(graphs[True].graph.nodes,
                                                                               graphs[False].graph.nodes)
                      if _signature_of(a) != _signature_of(b)), "the output")
        raise _refuse(t, m, f"differs between train and eval mode (first at {first}); the port keeps one graph "
                            "for a leaf module")
    gm = graphs[False]
    batch_sizes = _batch_sizes(m, state, inputs, rebuild, gm)
    finfo = _dtype_constants(m, state, inputs, rebuild, gm)

    refs = [t.tensor(a, PLAIN) for a in tensor_nodes]  # the main node is current: layout notes name the module
    scope = {path: (path, type(m))}
    first = path not in t.counted
    t.counted.add(path)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for n in gm.graph.nodes:
        n.name = f"{node.name}__{n.name}"
        n.meta["nn_module_stack"] = scope
    out = None
    mutated: dict[int, fx.Node] = {}  # input index -> the value an in-place module writes into it
    batch = _BatchContext(gm, node, refs[0].name if refs else "", inputs[0] if inputs else None)
    for n in gm.graph.nodes:
        t.node = n
        if n.op == "placeholder":
            i = placeholders.index(n)
            if i >= len(state):
                t.values[n.name] = Value(refs[i - len(state)].name, PLAIN, tuple(concrete(n).shape))
            elif n.users:
                name, value = state[i]
                full = f"{path}.{name}" if path else name
                buffer = name in buffers
                t.params[full] = Param(tuple(value.shape), buffer)
                t.emit("param", (), layout=PLAIN, target=full, torch_desc=f"{full} (read by the lowering)",
                       flax=f"{'Buffer' if buffer else 'nnx.Param'} {full} (read in forward)",
                       params=(0 if buffer or not first else value.numel(),) * 2)
        elif n.op == "get_attr":
            _constant(t, n, functools.reduce(getattr, str(n.target).split("."), gm))
        elif n.op == "call_function":
            if n.target is operator.getitem:
                t.emit("getitem", (Ref(t.value(n.args[0]).name), n.args[1]), layout=PLAIN, flax="tuple item",
                       torch_desc="getitem")
                continue
            name = _aten_name(n)
            if name == "aten.copy_.default":  # into an input (the only copy_ _refuse_impossible lets through)
                mutated[placeholders.index(n.args[0]) - len(state)] = n.args[1]
                continue
            rule = ATEN_RULES.get(name)
            if rule is None:
                raise _refuse(t, m, f"needs the ATen op {name}, which has no rule (parity.port.aten)")
            p = _params(n)
            for key, fits in batch_sizes.get(n, {}).items():
                p[key] = _batch_marked(p[key], fits, batch)
            for key, attr in finfo.get(n, {}).items():
                p[key] = _Finfo(attr, batch)
            rule(t, n, p)
        elif n.op == "output":
            out = n.args[0]
    t.node = node
    result = _result(t, out)
    t.emit("identity", (result,), layout=PLAIN, torch_desc=repr(m).split("\n")[0],
           flax=f"lowered through Core ATen ({sum(1 for n in gm.graph.nodes if n.op == 'call_function')} ops)")
    for j, src in mutated.items():  # parity trap: torch changed the input; its later readers see the new value
        a, v = tensor_nodes[j], t.value(src)
        if a.op == "get_attr":
            raise t.fail(f"changes `{a.target}` in place: forward mutating a parameter or buffer is not ported")
        t.values[a.name] = Value(v.name, PLAIN, v.shape)
        for key in [k for k in t.converted if k[0] == a.name]:
            del t.converted[key]
        if len(a.users) > 1:
            t.note(f"in-place {type(m).__name__} at {path}: later readers of its input read the result, as in torch")


# --- sizes that follow the batch -------------------------------------------------------------------

_SIZED = ("size", "N", "repeats")
"""Arguments of the lowered ops that may spell out the batch size (view/expand/full sizes, group norm's N,
repeat counts)."""


def _batch_sizes(m, state, inputs, rebuild, gm: fx.GraphModule) -> dict[fx.Node, dict[str, list]]:
    """{node: {argument: [(a, b) per element]}} for the sizes that are a * batch + b: found by lowering again
    with one and two more samples and comparing. Sizes that do not follow that rule, or a lowering whose
    ops differ, stay constants (the port is then tied to the example's batch, and says so)."""
    if not inputs or any(x.ndim == 0 or x.shape[0] != inputs[0].shape[0] for x in inputs):
        return {}
    b1 = inputs[0].shape[0]
    try:  # two more batch sizes: a fit through two points is checked on the third
        others = [_lower(m, state, [torch.cat([x] + [x[:1]] * k) for x in inputs], rebuild, m.training)
                  for k in (1, 2)]
    except Exception:
        return {}
    ns = list(gm.graph.nodes)
    rows = [list(o.graph.nodes) for o in others]
    if any(len(ns) != len(r) or any(a.op != b.op or a.target != b.target for a, b in zip(ns, r)) for r in rows):
        return {}
    out: dict[fx.Node, dict[str, list]] = {}
    for n, o2, o3 in zip(ns, *rows):
        if n.op != "call_function" or not isinstance(n.target, torch._ops.OpOverload):
            continue
        pn, p2, p3 = _params(n), _params(o2), _params(o3)
        for key in _SIZED:
            if key not in pn:
                continue
            seq = isinstance(pn[key], (list, tuple))
            one, two, three = ((list(p[key]) if seq else [p[key]]) for p in (pn, p2, p3))
            if not len(one) == len(two) == len(three) or one == two == three:
                continue
            fits = []
            for v1, v2, v3 in zip(one, two, three):
                if not all(isinstance(v, int) and not isinstance(v, bool) for v in (v1, v2, v3)):
                    break
                a, b = v2 - v1, v1 - (v2 - v1) * b1
                if a * (b1 + 2) + b != v3:
                    break
                fits.append((a, b))
            else:
                out.setdefault(n, {})[key] = fits if seq else fits[0]
    return out


_FINFO = ("eps", "tiny", "max", "min")


def _dtype_constants(m, state, inputs, rebuild, gm: fx.GraphModule) -> dict[fx.Node, dict[str, str]]:
    """{node: {argument: finfo attribute}} for the scalars that are `torch.finfo(dtype).eps` (tiny, max, min) of
    the float the module runs in (RMSNorm's default eps): found by lowering again in float64. They become
    `jnp.finfo(x.dtype)`'s, so the port run in float64 computes what torch's float64 twin does."""
    if not inputs or not all(x.is_floating_point() for x in inputs):
        return {}
    try:
        wide = _lower(m, [(n, v.double() if v.is_floating_point() else v) for n, v in state],
                      [x.double() for x in inputs], rebuild, m.training)
    except Exception:
        return {}
    ns, ws = list(gm.graph.nodes), list(wide.graph.nodes)
    if len(ns) != len(ws) or any(a.op != b.op or a.target != b.target for a, b in zip(ns, ws)):
        return {}
    f32, f64 = torch.finfo(torch.float32), torch.finfo(torch.float64)
    out: dict[fx.Node, dict[str, str]] = {}
    for n, w in zip(ns, ws):
        if n.op != "call_function" or not isinstance(n.target, torch._ops.OpOverload):
            continue
        pn, pw = _params(n), _params(w)
        for key, v in pn.items():
            if isinstance(v, float) and isinstance(pw.get(key), float) and v != pw[key]:
                attr = next((a for a in _FINFO if v == float(getattr(f32, a)) and pw[key] == float(getattr(f64, a))),
                            None)
                if attr is not None:
                    out.setdefault(n, {})[key] = attr
    return out


class _Finfo:
    """A scalar the port computes from the input's float type: jnp.finfo(x.dtype).<attr>."""

    def __init__(self, attr: str, ctx: "_BatchContext"):
        self.attr, self.ctx = attr, ctx


def _finfo_ref(t: Translator, x: _Finfo) -> Ref:
    ctx, key = x.ctx, ("finfo", x.attr)
    if key not in ctx.refs:
        _meta_op(t, ctx, f"finfo_{x.attr}", "aten_finfo", (Ref(ctx.input_name), x.attr),
                 float(getattr(torch.finfo(ctx.example.dtype), x.attr)), f"the float type's {x.attr}", key)
    return ctx.refs[key]


class _Batch:
    """A size the port computes from the input's batch: a * batch + b."""

    def __init__(self, a: int, b: int, ctx: "_BatchContext"):
        self.a, self.b, self.ctx = a, b, ctx


class _BatchContext:
    """The input whose dim 0 is the batch, and the size values already emitted (one op each)."""

    def __init__(self, gm: fx.GraphModule, node: fx.Node, input_name: str, example: torch.Tensor | None):
        self.gm, self.node, self.input_name, self.example = gm, node, input_name, example
        self.refs: dict[tuple[int, int], Ref] = {}


def _batch_marked(value: Any, fits: Any, ctx: _BatchContext) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(v if a == 0 else _Batch(a, b, ctx) for v, (a, b) in zip(value, fits))
    a, b = fits
    return value if a == 0 else _Batch(a, b, ctx)


def _batch_ref(t: Translator, x: _Batch) -> Ref:
    """The emitted value a * batch + b (batch = the input's dim 0), made once per (a, b)."""
    ctx = x.ctx
    if (1, 0) not in ctx.refs:
        _meta_op(t, ctx, "batch", "size", (Ref(ctx.input_name), 0), ctx.example.shape[0],
                 "the input's batch size")
    if (x.a, x.b) not in ctx.refs:
        base = ctx.refs[(1, 0)]
        value = x.a * ctx.example.shape[0] + x.b
        if x.b == 0:
            _meta_op(t, ctx, f"batch_x{x.a}", "mul", (base, x.a), value, "a size that follows the batch", (x.a, 0))
        else:
            _meta_op(t, ctx, f"batch_x{x.a}_{x.b}".replace("-", "m"), "aten_affine", (base, x.a, x.b), value,
                     "a size that follows the batch", (x.a, x.b))
    return ctx.refs[(x.a, x.b)]


def _meta_op(t: Translator, ctx: _BatchContext, name: str, kind: str, args: tuple, value: Any, flax: str,
             key: tuple = (1, 0)) -> None:
    current = t.node
    n = fx.Node(ctx.gm.graph, f"{ctx.node.name}__{name}", "call_function", operator.index, (), {})
    n.meta.update(concrete=value, nn_module_stack=current.meta.get("nn_module_stack"))
    t.node = n
    try:
        t.emit(kind, args, layout=PLAIN, flax=flax, torch_desc="(batch size)" if kind != "aten_finfo" else
               "(dtype constant)")
    finally:
        t.node = current
    ctx.refs[key] = Ref(n.name)


def _refuse(t: Translator, m: torch.nn.Module, why: str):
    """The PortError for a module with no rule whose lowering cannot be ported: module path, type and op."""
    return t.fail(f"unsupported module {type(m).__module__}.{type(m).__name__}: no rule, and its Core ATen "
                  f"lowering {why}")


def _signature_of(n: fx.Node) -> str:
    return f"{n.op} {n.target} {n.args} {n.kwargs}"


def _result(t: Translator, out: Any) -> Any:
    if isinstance(out, fx.Node):
        return t.tensor(out, PLAIN) if t.is_tensor(out) else Ref(t.value(out).name)
    if isinstance(out, (tuple, list)):
        return tuple(_result(t, o) for o in out)
    return t.static(out)


def _constant(t: Translator, n: fx.Node, value: Any) -> None:
    if not isinstance(value, torch.Tensor):
        raise t.fail(f"the lowering reads {n.target}, a {type(value).__name__}")
    if value.numel() > MAX_CONSTANT:
        raise t.fail(f"the lowering captures a constant tensor of {value.numel()} elements ({n.target}); only "
                     f"constants up to {MAX_CONSTANT} elements are written into model.py")
    t.emit("aten_constant", (_nested(value.tolist()), dtype_name(value.dtype)), layout=PLAIN,
           flax="constant tensor", torch_desc=f"constant {n.target}")


def _nested(v: Any) -> Any:
    return tuple(_nested(x) for x in v) if isinstance(v, list) else v


def _params(n: fx.Node) -> dict:
    """The node's arguments by schema name, defaults filled in."""
    out = {}
    for i, a in enumerate(n.target._schema.arguments):
        if i < len(n.args) and not a.kwarg_only:
            out[a.name] = n.args[i]
        elif a.name in n.kwargs:
            out[a.name] = n.kwargs[a.name]
        elif a.has_default_value():
            out[a.name] = a.default_value
        else:
            out[a.name] = None
    return out


def dtype_name(d: Any) -> str | None:
    """A torch dtype as the name `runtime.aten_dtype` reads: floats are 'float' (the model's float)."""
    if d is None:
        return None
    if d in _FLOATS:
        return "float"
    if d.is_complex:
        raise TypeError(f"complex dtype {d}")
    return str(d).removeprefix("torch.")


def _v(t: Translator, a: Any) -> Any:
    """An ATen argument as program data: tensors as PLAIN refs, dtypes as names, devices dropped, sizes
    that follow the batch as the emitted size."""
    if isinstance(a, _Batch):
        return _batch_ref(t, a)
    if isinstance(a, _Finfo):
        return _finfo_ref(t, a)
    if isinstance(a, fx.Node):
        return t.tensor(a, PLAIN) if t.is_tensor(a) else Ref(t.value(a).name)
    if isinstance(a, torch.dtype):
        try:
            return dtype_name(a)
        except TypeError as e:
            raise t.fail(f"{_aten_name(t.node)}: {e} is not ported") from e
    if isinstance(a, (list, tuple)):
        return tuple(_v(t, x) for x in a)
    if isinstance(a, (torch.device, torch.layout, torch.memory_format)):
        return None
    return t.static(a)


def _emit(t: Translator, kind: str, args: tuple, kwargs: dict | None = None, flax: str | None = None) -> None:
    t.emit(kind, args, kwargs, layout=PLAIN, flax=flax or kind, torch_desc=_aten_name(t.node))


# --- rule makers -----------------------------------------------------------------------------------

def _call(kind: str, *names: str, **fixed: Any) -> Rule:
    """`kind(*[the named arguments], **fixed)`: inline templates and runtime functions alike."""
    def rule(t: Translator, n: fx.Node, p: dict) -> None:
        _emit(t, kind, tuple(_v(t, p[k]) for k in names) + tuple(fixed.values()))
    return rule


def _unary(kind: str) -> Rule:
    return _call(kind, "self")


def _binary(kind: str, a: str = "self", b: str = "other") -> Rule:
    return _call(kind, a, b)


def _alpha(kind: str) -> Rule:
    """add / sub with torch's alpha (other * alpha)."""
    def rule(t: Translator, n: fx.Node, p: dict) -> None:
        alpha = p.get("alpha", 1)
        _emit(t, kind, (_v(t, p["self"]), _v(t, p["other"])), {"alpha": _v(t, alpha)} if alpha != 1 else None)
    return rule


def _div_mode(t: Translator, n: fx.Node, p: dict) -> None:
    _emit(t, "aten_div_mode", (_v(t, p["self"]), _v(t, p["other"]), p.get("rounding_mode")))


def _reduce(fn: str, dim: str | None = "dim") -> Rule:
    def rule(t: Translator, n: fx.Node, p: dict) -> None:
        _emit(t, "aten_reduce", (fn, _v(t, p["self"]), _v(t, p.get(dim)) if dim else None,
                                 bool(p.get("keepdim", False)), _v(t, p.get("dtype"))), flax=f"{fn} over torch dims")
    return rule


def _arg_reduce(fn: str) -> Rule:
    def rule(t: Translator, n: fx.Node, p: dict) -> None:
        _emit(t, "aten_arg", (fn, _v(t, p["self"]), p.get("dim"), bool(p.get("keepdim", False))))
    return rule


def _var_correction(t: Translator, n: fx.Node, p: dict) -> None:
    c = p.get("correction")
    _emit(t, "aten_var", (_v(t, p["self"]), _v(t, p.get("dim")), 1 if c is None else c, bool(p.get("keepdim"))))


def _var_dim(t: Translator, n: fx.Node, p: dict) -> None:
    _emit(t, "aten_var", (_v(t, p["self"]), _v(t, p.get("dim")), 1 if p.get("unbiased", True) else 0,
                          bool(p.get("keepdim"))))


def _along(kind: str) -> Rule:
    def rule(t: Translator, n: fx.Node, p: dict) -> None:
        _emit(t, kind, (_v(t, p["self"]), p["dim"]), {"keepdims": bool(p.get("keepdim"))})
    return rule


def _softmax(kind: str) -> Rule:
    def rule(t: Translator, n: fx.Node, p: dict) -> None:
        _emit(t, kind, (_v(t, p["self"]),), {"axis": p["dim"]})
    return rule


def _factory_dtype(p: dict, value: Any) -> str | None:
    d = p.get("dtype")
    if d is not None:
        return dtype_name(d)
    if isinstance(value, bool):
        return "bool"
    return "int64" if isinstance(value, int) else "float"


def _full(t: Translator, n: fx.Node, p: dict) -> None:
    _emit(t, "aten_full", (_v(t, p["size"]), _v(t, p["fill_value"]), _factory_dtype(p, p["fill_value"])))


def _scalar_tensor(t: Translator, n: fx.Node, p: dict) -> None:
    _emit(t, "aten_full", ((), _v(t, p["s"]), _factory_dtype(p, p["s"])))


def _empty(t: Translator, n: fx.Node, p: dict) -> None:
    """aten.empty / empty_strided: torch leaves the memory unset; zeros are one of its values."""
    _emit(t, "aten_full", (_v(t, p["size"]), 0, dtype_name(p.get("dtype")) or "float"), flax="zeros (torch: unset)")


def _full_like(t: Translator, n: fx.Node, p: dict) -> None:
    _emit(t, "aten_full_like", (_v(t, p["self"]), _v(t, p["fill_value"]), _v(t, p.get("dtype"))))


def _fill(t: Translator, n: fx.Node, p: dict) -> None:
    _emit(t, "aten_full_like", (_v(t, p["self"]), _v(t, p["value"])))


def _arange(t: Translator, n: fx.Node, p: dict) -> None:
    values = [p["start"], p["end"], p["step"]]
    dtype = dtype_name(p.get("dtype")) if p.get("dtype") is not None else (
        "float" if any(isinstance(v, float) for v in values) else "int64")
    _emit(t, "aten_arange", tuple(_v(t, v) for v in values) + (dtype,))


def _to_copy(t: Translator, n: fx.Node, p: dict) -> None:
    _emit(t, "aten_cast", (_v(t, p["self"]), _v(t, p.get("dtype"))), flax="cast (device and layout dropped)")


def _identity(t: Translator, n: fx.Node, p: dict) -> None:
    _emit(t, "identity", (_v(t, p["self"]),), flax="the same array (JAX arrays are values)")


def _cat(t: Translator, n: fx.Node, p: dict) -> None:
    xs = [x for x in p["tensors"] if not (isinstance(x, fx.Node) and tuple(concrete(x).shape) == (0,))]
    _emit(t, "cat", (tuple(_v(t, x) for x in xs),), {"axis": p["dim"] % concrete(xs[0]).ndim})


def _split(t: Translator, n: fx.Node, p: dict) -> None:
    _emit(t, "split", (_v(t, p["self"]), _v(t, p["split_sizes"])), {"axis": p["dim"]})


def _as_strided(t: Translator, n: fx.Node, p: dict) -> None:
    x = concrete(p["self"])
    if not x.is_contiguous() or x.storage_offset() != 0:
        raise t.fail("aten.as_strided of a non-contiguous tensor is not ported (its storage order is not its "
                     "dim order)")
    _emit(t, "aten_as_strided", (_v(t, p["self"]), _v(t, p["size"]), _v(t, p["stride"]),
                                 _v(t, p.get("storage_offset") or 0)))


def _index(t: Translator, n: fx.Node, p: dict) -> None:
    for i in p["indices"]:
        if i is not None and concrete(i).dtype == torch.bool:
            raise t.fail("aten.index with a boolean mask has a data-dependent shape; not ported")
    _emit(t, "aten_index", (_v(t, p["self"]), _v(t, p["indices"])))


def _index_put(t: Translator, n: fx.Node, p: dict) -> None:
    for i in p["indices"]:
        if i is not None and concrete(i).dtype == torch.bool:
            raise t.fail("aten.index_put with a boolean mask is not ported")
    _emit(t, "aten_index_put", (_v(t, p["self"]), _v(t, p["indices"]), _v(t, p["values"]), bool(p["accumulate"])))


def _scatter(reduce: str | None, src: str = "src") -> Rule:
    def rule(t: Translator, n: fx.Node, p: dict) -> None:
        how = reduce or p["reduce"]
        _emit(t, "aten_scatter", (_v(t, p["self"]), p["dim"], _v(t, p["index"]), _v(t, p[src]), how,
                                  bool(p.get("include_self", True))), flax=f"scatter ({how})")
    return rule


def _conv(t: Translator, n: fx.Node, p: dict) -> None:
    if concrete(p["input"]).ndim - 2 not in (1, 2, 3):
        raise t.fail("aten.convolution with other than 1, 2 or 3 spatial dims is not ported")
    _emit(t, "aten_convolution", tuple(_v(t, p[k]) for k in (
        "input", "weight", "bias", "stride", "padding", "dilation", "transposed", "output_padding", "groups")),
        flax="lax.conv_general_dilated (torch's layout)")


def _indices_unread(t: Translator, n: fx.Node) -> None:
    """A pooling's indices output may feed its own backward op (which recomputes the windows), nothing else."""
    for u in n.users:
        if u.target is operator.getitem and u.args[1] == 1:
            if any(_aten_name(w) != "aten.max_pool2d_with_indices_backward.default" for w in u.users):
                raise t.fail(f"{_aten_name(n)}: the indices output is not ported (values only)")


def _max_pool_tuple(nd: int) -> Rule:
    """max_pool{2,3}d_with_indices: (values, None); reading the indices is a PortError."""
    def rule(t: Translator, n: fx.Node, p: dict) -> None:
        _indices_unread(t, n)
        args = tuple(_v(t, p[k]) for k in ("self", "kernel_size", "stride", "padding", "dilation", "ceil_mode"))
        _emit(t, "aten_max_pool_with_indices", args, {"nd": nd},
              flax="max pool (values; the indices are not ported)")
    return rule


def _avg_pool(nd: int) -> Rule:
    def rule(t: Translator, n: fx.Node, p: dict) -> None:
        _emit(t, "aten_avg_pool", tuple(_v(t, p[k]) for k in (
            "self", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")),
            {"nd": nd}, flax="average pool (torch's divisors)")
    return rule


def _adaptive_max(t: Translator, n: fx.Node, p: dict) -> None:
    _indices_unread(t, n)
    _emit(t, "aten_adaptive_max_pool_with_indices", (_v(t, p["self"]), _v(t, p["output_size"])),
          flax="adaptive max pool (values)")


def _pad_mode(mode: str) -> Rule:
    return _call("aten_pad_mode", "self", "padding", mode=mode)


def _upsample(mode: str, vec: bool) -> Rule:
    def rule(t: Translator, n: fx.Node, p: dict) -> None:
        if vec:
            scales = p.get("scale_factors")
        else:
            hw = (p.get("scales_h"), p.get("scales_w"))
            scales = None if hw == (None, None) else hw
        align = bool(p.get("align_corners", False))
        _emit(t, "aten_upsample", (_v(t, p["input" if vec else "self"]), _v(t, p.get("output_size")),
                                   _v(t, scales), mode, align), flax=f"{mode} upsampling (torch's index rule)")
    return rule


def _layer_norm(t: Translator, n: fx.Node, p: dict) -> None:
    _emit(t, "aten_layer_norm", tuple(_v(t, p[k]) for k in ("input", "normalized_shape", "weight", "bias", "eps")))


def _group_norm(t: Translator, n: fx.Node, p: dict) -> None:
    _emit(t, "aten_group_norm", tuple(_v(t, p[k]) for k in ("input", "weight", "bias", "N", "C", "HxW", "group",
                                                             "eps")))


def _batch_norm(kind: str) -> Rule:
    """The batch norms: with running statistics (eval), or the batch's when there are none; training
    with running statistics updates them in place, which is refused."""
    def rule(t: Translator, n: fx.Node, p: dict) -> None:
        training = True if kind == "no_stats" else False if kind == "no_training" else bool(p["training"])
        has_stats = kind != "no_stats" and p.get("running_mean") is not None
        if training and has_stats:
            raise t.fail(f"{_aten_name(n)} in training mode updates the running statistics in place; not ported")
        mean = _v(t, p["running_mean"]) if has_stats else None
        var = _v(t, p["running_var"]) if has_stats else None
        _emit(t, "aten_batch_norm", (_v(t, p["input"]), _v(t, p["weight"]), _v(t, p["bias"]), mean, var,
                                     p["eps"], not has_stats), flax="batch norm (torch's statistics)")
    return rule


def _batch_norm_functional(t: Translator, n: fx.Node, p: dict) -> None:
    """_native_batch_norm_legit_functional (a batch norm on copies of the statistics): (out, mean, rstd, new
    running mean, new running var); writing the new statistics back into buffers is refused elsewhere."""
    _emit(t, "aten_batch_norm_functional", tuple(_v(t, p[k]) for k in (
        "input", "weight", "bias", "running_mean", "running_var", "training", "momentum", "eps")),
        flax="batch norm (torch's statistics, updated as values)")


def _dropout_eval(t: Translator, n: fx.Node, p: dict) -> None:
    """native_dropout with train False (or p 0): (input, an all-true mask); the random case is refused earlier."""
    if _train_flag(n) and p["p"] != 0:
        raise t.fail("aten.native_dropout in training mode is random; not ported inside a module with no rule")
    _emit(t, "aten_no_dropout", (_v(t, p["input"]),))


def _addmm(t: Translator, n: fx.Node, p: dict) -> None:
    _emit(t, "aten_addmm", tuple(_v(t, p[k]) for k in ("self", "mat1", "mat2", "beta", "alpha")))


def _clamp(t: Translator, n: fx.Node, p: dict) -> None:
    _emit(t, "clamp", (_v(t, p["self"]), _v(t, p.get("min")), _v(t, p.get("max"))))


def _embedding(t: Translator, n: fx.Node, p: dict) -> None:
    _emit(t, "aten_embedding", (_v(t, p["weight"]), _v(t, p["indices"])))


# --- the table -------------------------------------------------------------------------------------

_UNARY_INLINE = {
    "abs": "abs", "ceil": "ceil", "erf": "erf", "exp": "exp", "floor": "floor", "log": "log", "neg": "neg",
    "reciprocal": "reciprocal", "round": "round", "rsqrt": "rsqrt", "sigmoid": "sigmoid", "sqrt": "sqrt",
    "tanh": "tanh", "relu": "relu",
    "expm1": "aten_expm1", "log1p": "aten_log1p", "log2": "aten_log2", "log10": "aten_log10", "sin": "aten_sin",
    "cos": "aten_cos", "tan": "aten_tan", "sinh": "aten_sinh", "cosh": "aten_cosh", "asin": "aten_asin",
    "acos": "aten_acos", "atan": "aten_atan", "asinh": "aten_asinh", "acosh": "aten_acosh", "atanh": "aten_atanh",
    "trunc": "aten_trunc", "sign": "aten_sign", "isinf": "aten_isinf", "isnan": "aten_isnan",
    "logical_not": "aten_logical_not", "bitwise_not": "aten_invert",
}
_BINARY = {
    "mul": "mul", "div": "div", "pow": "pow", "maximum": "maximum", "minimum": "minimum", "eq": "eq", "ne": "ne",
    "lt": "lt", "le": "le", "gt": "gt", "ge": "ge", "fmod": "aten_fmod", "remainder": "aten_remainder",
    "bitwise_and": "aten_bitwise_and", "bitwise_or": "aten_bitwise_or", "bitwise_xor": "aten_bitwise_xor",
}

ATEN_RULES: dict[str, Rule] = {
    **{f"aten.{op}.default": _unary(kind) for op, kind in _UNARY_INLINE.items()},
    **{f"aten.{op}.{ov}": _binary(kind) for op, kind in _BINARY.items() for ov in ("Tensor", "Scalar")
       if op not in ("pow", "maximum", "minimum")},
    "aten.maximum.default": _binary("maximum"), "aten.minimum.default": _binary("minimum"),
    "aten.pow.Tensor_Scalar": _binary("pow", "self", "exponent"),
    "aten.pow.Tensor_Tensor": _binary("pow", "self", "exponent"),
    "aten.pow.Scalar": _binary("pow", "self", "exponent"),
    "aten.atan2.default": _binary("aten_arctan2"),
    **{f"aten.logical_{op}.default": _binary(f"aten_logical_{op}") for op in ("and", "or", "xor")},
    "aten.add.Tensor": _alpha("add"), "aten.add.Scalar": _alpha("add"),
    "aten.sub.Tensor": _alpha("sub"), "aten.sub.Scalar": _alpha("sub"),
    "aten.div.Tensor_mode": _div_mode, "aten.div.Scalar_mode": _div_mode,
    "aten.where.self": _call("where", "condition", "self", "other"),
    "aten.clamp.default": _clamp, "aten.clamp.Tensor": _clamp,
    "aten.hardtanh.default": _call("hardtanh", "self", "min_val", "max_val"),
    "aten.leaky_relu.default": _call("leaky_relu", "self", "negative_slope"),
    "aten.elu.default": _call("aten_elu", "self", "alpha", "scale", "input_scale"),
    "aten.gelu.default": _call("gelu", "self", "approximate"),
    # reductions
    "aten.sum.dim_IntList": _reduce("sum"), "aten.mean.dim": _reduce("mean"), "aten.mean.default": _reduce("mean", None),
    "aten.amax.default": _reduce("amax"), "aten.amin.default": _reduce("amin"),
    "aten.any.default": _reduce("any", None), "aten.any.dim": _reduce("any"), "aten.any.dims": _reduce("any"),
    "aten.prod.default": _reduce("prod", None), "aten.prod.dim_int": _reduce("prod"),
    "aten.argmax.default": _arg_reduce("argmax"), "aten.argmin.default": _arg_reduce("argmin"),
    "aten.var.correction": _var_correction, "aten.var.dim": _var_dim,
    "aten.max.dim": _along("max_along"), "aten.min.dim": _along("min_along"),
    "aten.cumsum.default": _call("aten_cumsum", "self", "dim"),
    "aten.sort.default": _call("aten_sort", "self", "dim", "descending"),
    "aten.topk.default": _call("aten_topk", "self", "k", "dim", "largest", "sorted"),
    "aten._softmax.default": _softmax("softmax"), "aten._log_softmax.default": _softmax("log_softmax"),
    "aten.linalg_vector_norm.default": _call("aten_vector_norm", "self", "ord", "dim", "keepdim"),
    # views and copies (JAX arrays are values: a view is a copy)
    "aten.view.default": _call("aten_view", "self", "size"),
    "aten._unsafe_view.default": _call("aten_view", "self", "size"),
    "aten.permute.default": _call("permute", "self", "dims"),
    "aten.expand.default": _call("aten_expand", "self", "size"),
    "aten.squeeze.dim": _call("aten_squeeze", "self", "dim"), "aten.squeeze.dims": _call("aten_squeeze", "self", "dim"),
    "aten.unsqueeze.default": _call("unsqueeze", "self", "dim"),
    "aten.slice.Tensor": _call("aten_slice", "self", "dim", "start", "end", "step"),
    "aten.select.int": _call("aten_select", "self", "dim", "index"),
    "aten.slice_scatter.default": _call("aten_slice_scatter", "self", "src", "dim", "start", "end", "step"),
    "aten.select_scatter.default": _call("aten_select_scatter", "self", "src", "dim", "index"),
    "aten.cat.default": _cat, "aten.split_with_sizes.default": _split,
    "aten.clone.default": _identity, "aten.alias.default": _identity, "aten.lift_fresh_copy.default": _identity,
    "aten._to_copy.default": _to_copy,
    "aten.copy.default": _call("aten_copy", "self", "src"),
    "aten.as_strided.default": _as_strided,
    "aten.flip.default": _call("aten_flip", "self", "dims"),
    "aten.repeat.default": _call("tile", "self", "repeats"),
    "aten.diagonal.default": _call("aten_diagonal", "self", "offset", "dim1", "dim2"),
    "aten.index.Tensor": _index, "aten.index_put.default": _index_put,
    "aten.index_select.default": _call("aten_index_select", "self", "dim", "index"),
    "aten.gather.default": _call("aten_gather", "self", "dim", "index"),
    "aten.scatter.src": _scatter("set"), "aten.scatter.value": _scatter("set", "value"),
    "aten.scatter_add.default": _scatter("sum"), "aten.scatter_reduce.two": _scatter(None),
    "aten.masked_scatter.default": _call("aten_masked_scatter", "self", "mask", "source"),
    "aten.embedding.default": _embedding,
    # factories
    "aten.full.default": _full, "aten.full_like.default": _full_like, "aten.fill.Scalar": _fill,
    "aten.scalar_tensor.default": _scalar_tensor, "aten.arange.start_step": _arange,
    "aten.empty.memory_format": _empty, "aten.empty_strided.default": _empty,
    # linear algebra, convolution
    "aten.mm.default": _binary("matmul", "self", "mat2"), "aten.bmm.default": _binary("matmul", "self", "mat2"),
    "aten.addmm.default": _addmm, "aten.convolution.default": _conv,
    "aten._cdist_forward.default": _call("aten_cdist", "x1", "x2", "p"),
    "aten._pdist_forward.default": _call("aten_pdist", "self", "p"),
    # pooling, padding, resampling
    "aten.avg_pool2d.default": _avg_pool(2), "aten.avg_pool3d.default": _avg_pool(3),
    "aten.max_pool2d_with_indices.default": _max_pool_tuple(2),
    "aten.max_pool3d_with_indices.default": _max_pool_tuple(3),
    "aten._adaptive_avg_pool2d.default": _call("aten_adaptive_avg_pool", "self", "output_size"),
    "aten._adaptive_avg_pool3d.default": _call("aten_adaptive_avg_pool", "self", "output_size"),
    "aten.adaptive_max_pool2d.default": _adaptive_max,
    "aten.constant_pad_nd.default": _call("aten_pad", "self", "pad", "value"),
    "aten.reflection_pad1d.default": _pad_mode("reflect"), "aten.reflection_pad2d.default": _pad_mode("reflect"),
    "aten.reflection_pad3d.default": _pad_mode("reflect"),
    "aten.replication_pad2d.default": _pad_mode("replicate"), "aten.replication_pad3d.default": _pad_mode("replicate"),
    "aten.upsample_nearest2d.vec": _upsample("nearest", True),
    "aten.upsample_bilinear2d.vec": _upsample("bilinear", True),
    "aten.upsample_nearest2d.default": _upsample("nearest", False),
    "aten.upsample_bilinear2d.default": _upsample("bilinear", False),
    "aten.grid_sampler_2d.default": _call("aten_grid_sample", "input", "grid", "interpolation_mode", "padding_mode",
                                          "align_corners"),
    # normalisation (tuples: (out, mean, rstd))
    "aten.native_layer_norm.default": _layer_norm, "aten.native_group_norm.default": _group_norm,
    "aten._native_batch_norm_legit_no_training.default": _batch_norm("no_training"),
    "aten._native_batch_norm_legit.default": _batch_norm("legit"),
    "aten._native_batch_norm_legit.no_stats": _batch_norm("no_stats"),
    "aten.native_batch_norm.default": _batch_norm("legit"),
    "aten._native_batch_norm_legit_functional.default": _batch_norm_functional,
    "aten.native_dropout.default": _dropout_eval,
    "aten.col2im.default": _call("aten_col2im", "self", "output_size", "kernel_size", "dilation", "padding", "stride"),
    # backward ops (a forward that differentiates): the gradients of the rules above
    "aten.convolution_backward.default": _call("aten_convolution_backward", "grad_output", "input", "weight",
                                               "bias_sizes", "stride", "padding", "dilation", "transposed",
                                               "output_padding", "groups", "output_mask"),
    "aten.avg_pool2d_backward.default": _call("aten_avg_pool_backward", "grad_output", "self", "kernel_size", "stride",
                                              "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    "aten.max_pool2d_with_indices_backward.default": _call("aten_max_pool_backward", "grad_output", "self",
                                                           "kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    "aten._adaptive_avg_pool2d_backward.default": _call("aten_adaptive_avg_pool_backward", "grad_output", "self"),
    "aten.native_layer_norm_backward.default": _call("aten_layer_norm_backward", "grad_out", "input",
                                                     "normalized_shape", "mean", "rstd", "weight", "bias",
                                                     "output_mask"),
    "aten.native_group_norm_backward.default": _call("aten_group_norm_backward", "grad_out", "input", "mean", "rstd",
                                                     "weight", "N", "C", "HxW", "group", "output_mask"),
    "aten.embedding_dense_backward.default": _call("aten_embedding_backward", "grad_output", "indices", "num_weights",
                                                   "padding_idx", "scale_grad_by_freq"),
}
