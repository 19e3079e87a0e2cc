"""The ported model as Flax NNX source: `model.py`, importable with numpy, jax, flax and safetensors alone.

What it holds, top to bottom: the torch-exact helpers the model uses (copied from
`parity.port.runtime` with what they depend on), the module class — submodules under the torch
paths in `__init__`, `__call__` as straight-line JAX with each statement's torch module path and
source line as a comment —, the key map (torch name, Flax path, torch shape, layout: one row per
state_dict tensor) and `load(path)` / `state_dict(model)` / `save(model, path)` in torch naming.
`parity.port.build` imports the module it proves from this file; nothing else runs.
"""

from __future__ import annotations

import ast
import inspect
import keyword
import builtins
import re
from dataclasses import dataclass
from typing import Any

from flax_cnn.model import batch_norm as bn_kernels
from flax_cnn.model import ops as kernels
from parity.port import runtime
from parity.port.layers import LayerSpec
from parity.port.program import NHWC, Op, Program, Ref, SliceArg

RANDOM_KINDS = frozenset({"uniform", "normal", "bernoulli"})

# op kind -> expression template over the rendered arguments ({0}, {1}, … and keyword names)
_INLINE = {
    "mul": "{0} * {1}", "div": "{0} / {1}", "neg": "-{0}", "floordiv": "{0} // {1}", "mod": "{0} % {1}",
    "pow": "{0} ** {1}", "lt": "{0} < {1}", "le": "{0} <= {1}", "gt": "{0} > {1}", "ge": "{0} >= {1}",
    "eq": "{0} == {1}", "ne": "{0} != {1}", "identity": "{0}", "constant": "{0}", "dim": "{0}.ndim",
    "dtype": "{0}.dtype", "stop_gradient": "lax.stop_gradient({0})", "relu": "jax.nn.relu({0})",
    "relu6": "jax.nn.relu6({0})", "silu": "jax.nn.silu({0})", "sigmoid": "jax.nn.sigmoid({0})",
    "tanh": "jnp.tanh({0})", "hardswish": "jax.nn.hard_swish({0})", "sqrt": "jnp.sqrt({0})",
    "rsqrt": "lax.rsqrt({0})", "exp": "jnp.exp({0})", "log": "jnp.log({0})", "abs": "jnp.abs({0})",
    "floor": "jnp.floor({0})", "ceil": "jnp.ceil({0})", "round": "jnp.round({0})", "erf": "jax.scipy.special.erf({0})",
    "reciprocal": "1 / {0}", "square": "jnp.square({0})", "matmul": "{0} @ {1}",
    "expand_as": "jnp.broadcast_to({0}, {1}.shape)", "expand": "jnp.broadcast_to({0}, {1})",
    "transpose": "jnp.swapaxes({0}, {1}, {2})", "unsqueeze": "jnp.expand_dims({0}, {1})",
    "clamp": "jnp.clip({0}, {1}, {2})", "maximum": "jnp.maximum({0}, {1})", "minimum": "jnp.minimum({0}, {1})",
    "softmax": "jax.nn.softmax({0}, axis={axis})", "log_softmax": "jax.nn.log_softmax({0}, axis={axis})",
    "cat": "jnp.concatenate({0}, axis={axis})", "stack": "jnp.stack({0}, axis={axis})",
    "mean": "jnp.mean({0}, axis={axis}, keepdims={keepdims})", "sum": "jnp.sum({0}, axis={axis}, keepdims={keepdims})",
    "amax": "jnp.max({0}, axis={axis}, keepdims={keepdims})", "amin": "jnp.min({0}, axis={axis}, keepdims={keepdims})",
    "full": "jnp.full({0}, {1}, {dtype} or jnp.float32)", "full_like": "jnp.full_like({0}, {1}, {dtype})",
    "to_nhwc": "to_nhwc({0})", "to_nchw": "to_nchw({0})", "where": "jnp.where({0}, {1}, {2})",
    "tile": "jnp.tile({0}, {1})",
}
_INLINE_ARITH = {"add": "+", "sub": "-"}  # without alpha: plain operators

# --- Core ATen lowering (parity.port.aten): one-call elementwise and indexing ops -------------------
_INLINE.update({f"aten_{fn}": f"jnp.{fn}({{0}})" for fn in (
    "expm1", "log1p", "log2", "log10", "sin", "cos", "tan", "sinh", "cosh", "trunc", "sign", "isinf", "isnan",
    "logical_not", "invert")})
_INLINE.update({f"aten_{fn}": f"jnp.arc{fn[1:]}({{0}})" for fn in ("asin", "acos", "atan", "asinh", "acosh", "atanh")})
_INLINE.update({f"aten_{fn}": f"jnp.{fn}({{0}}, {{1}})" for fn in (
    "arctan2", "fmod", "remainder", "bitwise_and", "bitwise_or", "bitwise_xor", "logical_and", "logical_or",
    "logical_xor")})
_INLINE.update({"aten_flip": "jnp.flip({0}, {1})", "aten_index_select": "jnp.take({0}, {2}, axis={1})",
                "aten_diagonal": "jnp.diagonal({0}, {1}, {2}, {3})", "aten_cumsum": "jnp.cumsum({0}, axis={1})",
                "aten_affine": "{0} * {1} + {2}"})

HEADER_IMPORTS = ("from __future__ import annotations", "",  # the copied kernel table's annotations stay unevaluated
                  "import contextvars", "import functools", "import math", "import os", "from pathlib import Path", "",
                  "import jax", "import jax.numpy as jnp", "import numpy as np", "from flax import nnx", "from jax import lax",
                  "from safetensors.numpy import load_file, save_file")


@dataclass(frozen=True)
class Param:
    """A parameter or buffer torch's forward reads directly (layer scale, a hand-written norm's weight)."""

    shape: tuple[int, ...]
    buffer: bool = False


@dataclass(frozen=True)
class Source:
    """What the emitter needs: the programs, the layer tree, the key map rows and a few facts."""

    class_name: str
    origin: str
    program: Program
    eval_program: Program | None
    tree: dict
    """Nested dict along torch paths; leaves are LayerSpec or Param; inner dicts carry '__type__'."""
    key_map: tuple[tuple[str, tuple, tuple, str], ...]
    unused: tuple[tuple[str, tuple, str], ...]
    """(torch key, shape, layout) of state_dict tensors no ported op reads: held in `self.unused`, never read."""
    comments: dict
    """op out -> 'torch module path: file:line'."""
    batch_size: int | None
    header: tuple[str, ...]


def var_names(programs: tuple[Program, ...]) -> dict[str, str]:
    """fx node name -> a Python name for the value (the fx name unless it clashes with a keyword, a
    builtin, a name of the emitted file or the call's arguments)."""
    taken = set(keyword.kwlist) | set(dir(builtins)) | _runtime_names() | {
        "self", "key", "jax", "jnp", "np", "lax", "nnx", "math", "functools", "Path", "json", "load_file",
        "save_file", "KEY_MAP", "UNUSED", "load", "save", "state_dict", "x"}
    out: dict[str, str] = {}
    for prog in programs:
        for name in [prog.input, *(op.out for op in prog.ops)]:
            if name in out:
                continue
            py = re.sub(r"\W", "_", name)
            py = py if py.isidentifier() and py not in taken else f"{py}_"
            while py in taken and py not in out.values():
                py += "_"
            out[name] = py
    return out


def unused_name(key: str) -> str:
    """The attribute name under `self.unused` of an unread state_dict tensor ('a.b.weight' -> 'a__b__weight')."""
    return key.replace(".", "__")


def _runtime_names() -> set[str]:
    return {n for n in vars(runtime) if not n.startswith("__")}


class _Renderer:
    def __init__(self, names: dict[str, str]):
        self.names = names
        self.used: set[str] = set()  # runtime names the code calls

    def value(self, a: Any) -> str:
        if isinstance(a, Ref):
            return self.names[a.name]
        if isinstance(a, SliceArg):
            return f"slice({self.value(a.start)}, {self.value(a.stop)}, {self.value(a.step)})"
        if isinstance(a, tuple):
            inner = ", ".join(self.value(x) for x in a)
            return f"({inner},)" if len(a) == 1 else f"({inner})"
        if isinstance(a, float) and (a != a or a in (float("inf"), float("-inf"))):
            return f"float({str(a)!r})"
        if a is Ellipsis:
            return "..."
        return repr(a)

    def index(self, idx: Any) -> str:
        parts = idx if isinstance(idx, tuple) else (idx,)
        out = []
        for p in parts:
            if isinstance(p, SliceArg):
                s = ":".join("" if v is None else self.value(v) for v in (p.start, p.stop, p.step))
                out.append(s[:-1] if s.endswith(":") and s.count(":") == 2 else s)
            else:
                out.append(self.value(p))
        return ", ".join(out) + ("," if len(parts) == 1 and isinstance(idx, tuple) else "")

    def call(self, fn: str, args: tuple, kwargs: dict) -> str:
        self.used.add(fn)
        parts = [self.value(a) for a in args] + [f"{k}={self.value(v)}" for k, v in kwargs.items()]
        return f"{fn}({', '.join(parts)})"


def attr_path(path: str) -> str:
    """`self.layer1["0"].conv1` for the torch path 'layer1.0.conv1'."""
    out = "self"
    for part in path.split("."):
        out += f".{part}" if part.isidentifier() and not keyword.iskeyword(part) else f"[{part!r}]"
    return out


def _statement(op: Op, r: _Renderer) -> str:
    args, kwargs = op.args, dict(op.kwargs)
    if op.kind == "module":
        call = f"{attr_path(op.target)}({', '.join(r.value(a) for a in args)}"
        if op.dropout_index >= 0:
            r.used.add("fold_in")
            call += f", fold_in(key, {op.dropout_index})"
        return call + ")"
    if op.kind == "param":
        return f"{attr_path(op.target)}.get_value()"
    if op.kind == "getitem":
        if isinstance(args[0], Ref) or isinstance(args[0], tuple):
            return f"{r.value(args[0])}[{r.index(args[1])}]"
    if op.kind == "size":
        r.used.add("torch_size")
        nhwc = kwargs.get("layout") == NHWC
        return f"torch_size({r.value(args[0])}, {r.value(args[1])}{', nhwc=True' if nhwc else ''})"
    if op.kind == "dropout":
        r.used.update(("fold_in", "dropout"))
        if op.random_index >= 0:
            r.used.add("replayed")
            return (f"replayed(self, 'dropout', {op.random_index}, {r.value(args[0])}, {kwargs['rate']!r}, "
                    f"{op.layout == NHWC}) if self.port_random is not None and not self.deterministic else "
                    f"dropout({r.value(args[0])}, {kwargs['rate']!r}, self.deterministic, fold_in(key, {op.dropout_index}))")
        return f"dropout({r.value(args[0])}, {kwargs['rate']!r}, self.deterministic, fold_in(key, {op.dropout_index}))"
    if op.kind in RANDOM_KINDS:
        return _random(op, r)
    if op.kind in _INLINE_ARITH and "alpha" not in kwargs:
        return f"{r.value(args[0])} {_INLINE_ARITH[op.kind]} {r.value(args[1])}"
    if op.kind in _INLINE:
        rendered = [r.value(a) for a in args]
        kw = {k: r.value(v) for k, v in kwargs.items()}
        kw.setdefault("keepdims", "False")
        kw.setdefault("dtype", "None")
        kw.setdefault("axis", "None")
        if op.kind == "to_nhwc" or op.kind == "to_nchw":
            r.used.add(op.kind)
        return _INLINE[op.kind].format(*rendered, **kw)
    if not hasattr(runtime, op.kind):
        raise KeyError(f"no runtime function for op kind {op.kind!r}")
    return r.call(op.kind, args, kwargs)


def _random(op: Op, r: _Renderer) -> str:
    """torch.rand/randn/bernoulli at random site `op.random_index`: drawn from the call's key, or a parity
    check's replayed torch values (`self.port_random`)."""
    r.used.update(("fold_in", "random_draw", "replayed"))
    kwargs = dict(op.kwargs)
    a0 = r.value(op.args[0])
    dtype = r.value(kwargs["dtype"]) if kwargs.get("dtype") is not None else None
    prob = None
    if op.kind == "bernoulli":
        shape, dtype = f"{a0}.shape", f"{a0}.dtype"
        prob = a0 if kwargs.get("p") is None else repr(kwargs["p"])
    elif kwargs.get("like"):
        shape, dtype = f"{a0}.shape", dtype or f"{a0}.dtype"
    else:
        shape, dtype = f"tuple({a0})", dtype or "jnp.float32"
    replay = f"replayed(self, {op.kind!r}, {op.random_index}, jnp.zeros({shape}, {dtype}), None, {op.layout == NHWC})"
    if op.kind == "bernoulli":
        replay = f"({replay} < {prob}).astype({dtype})"
    draw = f"random_draw({op.kind!r}, {shape}, {dtype}, fold_in(key, {op.dropout_index}), {prob})"
    return f"{replay} if self.port_random is not None else {draw}"


def _definitions(module) -> tuple[dict[str, ast.stmt], list[str], list[str]]:
    """Top-level definitions of `module`'s file by name (a custom_vjp's `f.defvjp(...)` line as "f.defvjp"),
    in file order, and the file's lines."""
    text = inspect.getsource(module)
    defs: dict[str, ast.stmt] = {}
    order: list[str] = []
    for node in ast.parse(text).body:
        targets = []
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            targets = [node.name]
        elif isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):  # FORMULATIONS: dict[...] = …
            targets = [node.target.id]
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):  # hardsigmoid.defvjp(...)
            f = node.value.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                targets = [f"{f.value.id}.{f.attr}"]
        for t in targets:
            defs[t] = node
            order.append(t)
    return defs, order, text.splitlines()


def _closure(names: set[str]) -> list[str]:
    """The definitions `names` need: the twin's CPU conv kernels (`flax_cnn.model.ops`, first: module-level
    lines there build kernels at import), its BatchNorm backward, then the runtime's own, each in its file's order."""
    sources = [_definitions(kernels), _definitions(bn_kernels), _definitions(runtime)]
    defs: dict[str, ast.stmt] = {}
    for d, _, _ in sources:
        defs.update(d)  # the runtime's definition wins a name both files define
    want, todo = set(), list(names)
    while todo:
        n = todo.pop()
        if n in want or n not in defs:
            continue
        want.add(n)
        local = {a.arg for a in ast.walk(defs[n]) if isinstance(a, ast.arg)} | {
            s.id for s in ast.walk(defs[n]) if isinstance(s, ast.Name) and isinstance(s.ctx, ast.Store)}
        for sub in ast.walk(defs[n]):  # names it reads that are not its own locals (BatchNorm's `var`)
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and sub.id in defs and sub.id not in local:
                todo.append(sub.id)
        for extra in (t for t in defs if t.startswith(n + ".")):  # a custom_vjp's defvjp line
            todo.append(extra)
    seen, out = set(), []
    for d, order, lines in sources:
        for t in order:
            node = d[t]
            if t in want and defs[t] is node and id(node) not in seen:
                seen.add(id(node))
                first = node.decorator_list[0].lineno if getattr(node, "decorator_list", None) else node.lineno
                out.append("\n".join(lines[first - 1:node.end_lineno]))
    return out


def _ctor(spec: LayerSpec, r: _Renderer) -> str:
    """`Class(args, keyword=value)`, keywords left out where they equal the class's default (readable lines)."""
    r.used.add(spec.cls)
    args = [r.value(a) for a in spec.args]
    if spec.fn is not None:
        if "." not in spec.fn:
            r.used.add(spec.fn)
        args.insert(0, spec.fn)
    params = inspect.signature(getattr(runtime, spec.cls).__init__).parameters
    for k, v in spec.kwargs:
        default = params[k].default if k in params else inspect.Parameter.empty
        if default is inspect.Parameter.empty or _normal(default) != _normal(v):
            args.append(f"{k}={r.value(v)}")
    return f"{spec.cls}({', '.join(args)})"


def _normal(v: Any) -> Any:
    """Lists and tuples alike, for comparing an argument with its default."""
    return tuple(_normal(x) for x in v) if isinstance(v, (tuple, list)) else v


def _tree_lines(tree: dict, r: _Renderer, indent: int) -> list[str]:
    """Keyword arguments of a Scope (or the attribute assignments of the root) for `tree`'s children."""
    lines = []
    pad = " " * indent
    numbered = [n for n in tree if n != "__type__" and not (n.isidentifier() and not keyword.iskeyword(n))]
    for name, child in tree.items():
        if name == "__type__":
            continue
        lhs = f"{name}=" if name not in numbered else f"{name!r}: "
        close = ""
        if isinstance(child, dict):
            r.used.add("Scope")
            inner = _tree_lines(child, r, indent + 4)
            body = "\n".join(inner)
            lines.append(f"{pad}{lhs}Scope(  # {child.get('__type__', '')}\n{body}\n{pad}){close},")
        elif isinstance(child, Param):
            cls = "Buffer" if child.buffer else "nnx.Param"
            if child.buffer:
                r.used.add("Buffer")
            lines.append(f"{pad}{lhs}{cls}(jnp.zeros({r.value(tuple(child.shape))}, jnp.float32)){close},")
        else:
            lines.append(f"{pad}{lhs}{_ctor(child, r)}{close},")
    if numbered:  # an nn.Sequential's children 0, 1, …: one dict of keyword arguments
        names = [n for n in tree if n != "__type__"]
        named = [ln for ln, n in zip(lines, names) if n not in numbered]
        inner = ["\n".join("    " + x for x in ln.split("\n")) for ln, n in zip(lines, names) if n in numbered]
        lines = named + [f"{pad}**{{", *inner, f"{pad}}},"]
    return lines


def _forward(name: str, prog: Program, src: Source, r: _Renderer, doc: str) -> list[str]:
    lines = [f"    def {name}(self, x, key=None):", f'        """{doc}"""']
    lines.append(f"        {r.names[prog.input]} = x")
    for op in prog.ops:
        comment = src.comments.get(op.out, "")
        stmt = f"        {r.names[op.out]} = {_statement(op, r)}"
        lines.append(stmt + (f"  # {comment}" if comment else ""))
    lines.append(f"        return {_output(prog.output, r)}")
    return lines


def _output(out: Any, r: _Renderer) -> str:
    if isinstance(out, dict):
        return "{" + ", ".join(f"{k!r}: {_output(v, r)}" for k, v in out.items()) + "}"
    if isinstance(out, tuple):
        inner = ", ".join(_output(o, r) for o in out)
        return f"({inner},)" if len(out) == 1 else f"({inner})"
    return r.value(out)


def emit(src: Source, names: dict[str, str]) -> str:
    """The text of model.py."""
    r = _Renderer(names)
    init = ["    def __init__(self):"]
    numbered = False
    for name, child in src.tree.items():
        if name == "__type__":
            continue
        if isinstance(child, dict):
            r.used.add("Scope")
            body = "\n".join(_tree_lines(child, r, 12))
            value = f"Scope(  # {child.get('__type__', '')}\n{body}\n        )"
        elif isinstance(child, Param):
            cls = "Buffer" if child.buffer else "nnx.Param"
            if child.buffer:
                r.used.add("Buffer")
            value = f"{cls}(jnp.zeros({r.value(tuple(child.shape))}, jnp.float32))"
        else:
            value = _ctor(child, r)
        if name.isidentifier() and not keyword.iskeyword(name):
            init.append(f"        self.{name} = {value}")
        else:  # an nn.Sequential's numbered children
            numbered = True
            init.append(f"        setattr(self, {name!r}, {value})")
    if src.unused:
        r.used.add("Unused")
        rows = "\n".join(f"            {unused_name(k)!r}: Unused(jnp.zeros({r.value(tuple(s))}, "
                         f"{'jnp.int32' if dt == 'count' else 'jnp.float32'}))," for k, s, dt in src.unused)
        init.append("        # tensors of modules the forward never calls: kept for a state_dict round trip\n"
                    f"        self.unused = Scope(**{{\n{rows}\n        }})")
    init.append("        self.deterministic = False  # .eval() sets it: dropout off, the eval-mode graph")
    randomized = any(op.random_index >= 0 for p in (src.program, src.eval_program) if p for op in p.ops)
    if randomized:
        init.append("        self.port_random = None  # a parity check replays torch's random draws through it")

    if numbered:
        init += ["", "    def __getitem__(self, name):", "        return getattr(self, str(name))"]
    call = ["    def __call__(self, x, key=None):",
            '        """x: NHWC (torch\'s NCHW input transposed); key: PRNG key for dropout and random ops in '
            'train mode."""']
    if src.batch_size is not None:
        call += [f"        if x.shape[0] != {src.batch_size}:",
                 f"            raise ValueError(f\"this port runs only with batch {src.batch_size} (the torch forward "
                 f"uses the batch size as a Python number); got {{x.shape[0]}}\")"]
    body: list[str] = []
    if src.eval_program is None:
        body += _forward("forward", src.program, src, r, "The torch forward, in train and eval mode alike.")
        call.append("        return self.forward(x, key)")
    else:
        body += _forward("forward_train", src.program, src, r, "The torch forward traced with self.training True.")
        body += [""] + _forward("forward_eval", src.eval_program, src, r,
                                "The torch forward traced with self.training False.")
        call.append("        return self.forward_eval(x, key) if self.deterministic else self.forward_train(x, key)")

    helpers = _closure(r.used)
    key_rows = [f"    ({k!r}, {p!r}, {tuple(s)!r}, {layout!r})," for k, p, s, layout in src.key_map]
    key_rows += [f"    ({k!r}, ('unused', {unused_name(k)!r}), {tuple(s)!r}, {dt!r}),  # unused"
                 for k, s, dt in src.unused]
    r_helpers = _closure({"load_tensors", "state_tensors"})
    doc = "\n".join(src.header)
    parts = [f'"""{doc}\n"""', "", *[i for i in HEADER_IMPORTS], "", "",
             "# --- torch-exact helpers (from parity.port.runtime; kernels from flax_cnn.model.ops and .batch_norm) ", "",
             *[h + "\n\n" for h in helpers + [h for h in r_helpers if h not in helpers]],
             f"class {src.class_name}(nnx.Module):",
             f'    """{src.origin} as Flax NNX: submodules under the torch names, NHWC activations."""', "",
             *init, "", *call, "", *body, "", "",
             "KEY_MAP = [  # torch state_dict key, Flax path, torch shape, layout change", *key_rows, "]", "", "",
             "def load(path=None):",
             f'    """{src.class_name} with the weights of `path` (torch naming; default: model.safetensors beside '
             'this file)."""',
             "    tensors = load_file(str(path or Path(__file__).with_name(\"model.safetensors\")))",
             f"    return load_tensors({src.class_name}(), tensors, KEY_MAP)", "", "",
             "def state_dict(model):",
             '    """Torch-named numpy tensors: the original torch module `load_state_dict`s them (strict)."""',
             "    return state_tensors(model, KEY_MAP)", "", "",
             "def save(model, path):",
             "    save_file(state_dict(model), str(path), {\"format\": \"pt\"})", ""]
    text = "\n".join(parts)
    text = re.sub(r"\n{4,}", "\n\n\n", text)
    return text
