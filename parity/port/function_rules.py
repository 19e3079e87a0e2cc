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

from parity.port.sizes import adaptive_size, pair
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
    """mean/sum/amax/amin/var/std over dims: NHWC when the kept dims come out in torch's order, else on NCHW.

    var/std take torch's correction (unbiased=True: 1, the default; unbiased=False: 0)."""
    def rule(t: Translator, node: fx.Node) -> None:
        x = node.args[0]
        dim = arg(node, 1, "dim", None)
        extra = {}
        if fn in ("var", "std"):
            rest = node.args[2:]
            unbiased = rest[0] if rest and isinstance(rest[0], bool) else node.kwargs.get("unbiased", True)
            keepdim = bool(rest[1] if len(rest) > 1 else node.kwargs.get("keepdim", False))
            correction = node.kwargs.get("correction", 1 if unbiased else 0)
            if isinstance(dim, bool):  # x.std(False): the unbiased flag in dim's place
                dim, correction = None, int(dim)
            extra = {"correction": int(correction)}
        else:
            keepdim = bool(arg(node, 2, "keepdim", False))
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
                t.emit(fn, (t.tensor(x, NHWC),), {"axis": axes, "keepdims": keepdim, **extra}, layout=out,
                       flax=f"{fn} over NHWC axes {axes}")
                return
        t.emit(fn, (t.tensor(x, PLAIN),), {"axis": dims, "keepdims": keepdim, **extra}, layout=PLAIN, flax=fn)
    return rule


def _max_min(fn: str) -> Rule:
    """torch.max/min: of everything (amax), elementwise with another tensor, or along a dim ((values, indices))."""
    reduce_all, binary_fn, along = _reduce("amax" if fn == "max" else "amin"), binary(
        "maximum" if fn == "max" else "minimum"), f"{fn}_along"

    def rule(t: Translator, node: fx.Node) -> None:
        other = arg(node, 1, "dim", node.kwargs.get("other"))
        if other is None:
            return reduce_all(t, node)
        if isinstance(other, fx.Node) and t.is_tensor(other):
            return binary_fn(t, node)
        x, keepdim = node.args[0], bool(arg(node, 2, "keepdim", False))
        v, dim = t.value(x), int(other)
        if v.rank == 4 and v.layout == NHWC and keepdim:
            t.emit(along, (t.tensor(x, NHWC), NCHW_TO_NHWC_AXIS[dim % 4]), {"keepdims": True}, layout=NHWC,
                   flax=f"(values, indices) along NHWC axis {NCHW_TO_NHWC_AXIS[dim % 4]}")
        else:
            t.emit(along, (t.tensor(x, PLAIN), dim), {"keepdims": keepdim}, layout=PLAIN, flax="(values, indices)")
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
    if not t.is_tensor(x) or name not in ("shape", "device", "dtype", "ndim"):
        raise t.fail(f"reads `.{name}` of a value; `.shape`, `.ndim`, `.dtype` and `.device` of a tensor are ported")
    v = t.value(x)
    if name == "shape":
        t.emit("size", (Ref(v.name), None), {"layout": v.layout}, layout=META, flax="shape in torch's dim order")
    elif name == "ndim":
        t.emit("dim", (Ref(v.name),), layout=META, flax="ndim")
    elif name == "dtype":
        t.emit("dtype", (Ref(v.name),), layout=META, flax="the array's dtype")
    else:  # one device per port: the device argument of a factory call is ignored
        t.emit("constant", (None,), layout=META, flax="device (ignored)")


def _nhwc_index(idx) -> tuple | None:
    """A basic index of slices (and `...` at the end) on an NCHW tensor, reordered for its NHWC storage;
    None for anything that does not keep the four dims (ints, None, tensors, a leading `...`)."""
    parts = idx if isinstance(idx, tuple) else (idx,)
    if parts and parts[-1] is Ellipsis:
        parts = parts[:-1]
    if len(parts) > 4 or not all(isinstance(p, slice) for p in parts):
        return None
    full = tuple(parts) + (slice(None),) * (4 - len(parts))
    return tuple(full[d] for d in (0, 2, 3, 1))


def _getitem(t: Translator, node: fx.Node) -> None:
    obj, idx = node.args
    if t.is_tensor(obj):
        v = t.value(obj)
        nhwc = _nhwc_index(idx) if v.rank == 4 and v.layout == NHWC else None
        if nhwc is not None:
            t.emit("getitem", (t.tensor(obj, NHWC), t.static(nhwc)), layout=NHWC, flax="slicing (NHWC axes)")
        else:
            t.emit("getitem", (t.tensor(obj, PLAIN), t.static(idx)), layout=PLAIN, flax="indexing (on NCHW)")
    elif isinstance(obj, fx.Node) and t.value(obj).items is not None:
        v = t.value(obj)
        t.emit("getitem", (Ref(v.name), t.static(idx)), layout=v.layout, flax="element of a chunk/split")
    else:
        t.emit("getitem", (t.static(obj), t.static(idx)), layout=META, flax="indexing")


def _dropout(t: Translator, node: fx.Node) -> None:
    x = node.args[0]
    p, training = float(arg(node, 1, "p", 0.5)), arg(node, 2, "training", True)
    layout = t.value(x).layout
    if not training:  # traced in train mode: a literal False means "never drop"
        t.emit("identity", (t.tensor(x, layout),), layout=layout, flax="identity (training=False)")
        return
    t.emit("dropout", (t.tensor(x, layout),), {"rate": p}, layout=layout, random=True,
           flax="dropout (explicit key, the module's train/eval; a random site a parity check replays)",
           inplace_of=_inplace(t, node))


def _pair_or_ref(t: Translator, v):
    """A (h, w) pair, or a reference to a traced size the program turns into one when it runs
    (`F.avg_pool2d(out, out.size(3))`: the kernel is the map's size, for any input size)."""
    return t.static(v) if isinstance(v, fx.Node) or (isinstance(v, (tuple, list)) and any(
        isinstance(e, fx.Node) for e in v)) else pair(v)


def _pool(fn: str) -> Rule:
    def rule(t: Translator, node: fx.Node) -> None:
        x = node.args[0]
        k = _pair_or_ref(t, arg(node, 1, "kernel_size"))
        stride = arg(node, 2, "stride", None)
        stride = k if stride is None or stride == [] or stride == () else _pair_or_ref(t, stride)
        padding = _pair_or_ref(t, arg(node, 3, "padding", 0))
        if fn == "max_pool2d":
            if arg(node, 6, "return_indices", False):
                raise t.fail("F.max_pool2d(return_indices=True) is not ported")
            kw = {"dilation": pair(arg(node, 4, "dilation", 1)), "ceil_mode": bool(arg(node, 5, "ceil_mode", False))}
        else:
            kw = {"ceil_mode": bool(arg(node, 4, "ceil_mode", False)),
                  "count_include_pad": bool(arg(node, 5, "count_include_pad", True)),
                  "divisor_override": arg(node, 6, "divisor_override", None)}
        t.emit(fn, (t.tensor(x, NHWC), k, stride, padding), kw, layout=NHWC,
               flax=f"{fn} (torch windows)")
    return rule


def _adaptive_avg(t: Translator, node: fx.Node) -> None:
    x, size = node.args[0], adaptive_size(arg(node, 1, "output_size"))
    t.emit("adaptive_avg_pool2d", (t.tensor(x, NHWC), size), layout=NHWC,
           flax="adaptive_avg_pool2d (torch bins)")


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


def _split_axis(t: Translator, x: fx.Node, dim) -> tuple[str, int]:
    """(layout, axis) a split along torch dim `dim` runs in: NHWC storage when the tensor has it."""
    if isinstance(dim, fx.Node):
        raise t.fail(f"{target_name(t.node)} along a traced dim is not ported; give the dim as a number")
    v = t.value(x)
    if v.rank == 4 and v.layout == NHWC:
        return NHWC, NCHW_TO_NHWC_AXIS[int(dim) % 4]
    return PLAIN, int(dim)


def _chunk(t: Translator, node: fx.Node) -> None:
    x, chunks, dim = node.args[0], arg(node, 1, "chunks"), arg(node, 2, "dim", 0)
    layout, axis = _split_axis(t, x, dim)
    t.emit("chunk", (t.tensor(x, layout), t.static(chunks)), {"axis": axis}, layout=layout,
           flax=f"torch.chunk semantics along {'NHWC ' if layout == NHWC else ''}axis {axis}")


def _split(t: Translator, node: fx.Node) -> None:
    x, sizes, dim = node.args[0], arg(node, 1, "split_size_or_sections"), arg(node, 2, "dim", 0)
    layout, axis = _split_axis(t, x, dim)
    t.emit("split", (t.tensor(x, layout), t.static(sizes)), {"axis": axis}, layout=layout,
           flax=f"torch.split semantics along {'NHWC ' if layout == NHWC else ''}axis {axis}")


def _dtype_arg(t: Translator, dtype):
    """A factory's or cast's dtype: a traced `x.dtype` (the array's own when it runs) or a torch dtype's name."""
    if dtype is None or isinstance(dtype, fx.Node):
        return t.static(dtype)
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point or dtype in (torch.bool, torch.int32, torch.int64):
        return str(dtype).removeprefix("torch.")
    raise t.fail(f"dtype {dtype} is not ported")


_FACTORY_KEYWORDS = {"dtype", "device", "requires_grad", "layout", "pin_memory", "memory_format"}


def _sizes(t: Translator, node: fx.Node, first: int):
    """The size arguments of a factory: `torch.rand(n, 1, 1, 1)` or `torch.rand((n, 1, 1, 1))` or a traced Size."""
    sizes = node.args[first:] if node.args[first:] else (node.kwargs.get("size"),)
    if len(sizes) == 1 and (isinstance(sizes[0], (tuple, list, torch.Size)) or isinstance(sizes[0], fx.Node)):
        sizes = sizes[0]
    return t.static(tuple(sizes) if isinstance(sizes, (list, torch.Size)) else sizes)


def _factory(kind: str, fill=None) -> Rule:
    """torch.rand/randn (random sites) and zeros/ones/empty/full (constants), in torch's dim order."""
    def rule(t: Translator, node: fx.Node) -> None:
        unknown = set(node.kwargs) - _FACTORY_KEYWORDS - {"size", "fill_value"}
        if unknown or node.kwargs.get("requires_grad"):
            raise t.fail(f"{target_name(node)} with {sorted(unknown) or 'requires_grad=True'} is not ported")
        kw = {"dtype": _dtype_arg(t, node.kwargs.get("dtype"))}
        if kind == "full":
            if fill is None:  # torch.full(size, fill_value)
                value, size = arg(node, 1, "fill_value"), arg(node, 0, "size")
                shape = t.static(tuple(size) if isinstance(size, (list, torch.Size)) else size)
            else:
                value, shape = fill, _sizes(t, node, 0)
            t.emit("full", (shape, t.static(value)), kw, layout=PLAIN, flax="jnp.full")
        else:
            t.emit(kind, (_sizes(t, node, 0),), kw, layout=PLAIN, random=True,
                   flax=f"jax.random.{kind} (a random site: the call's key, or a parity check's fixed values)")
    return rule


def _like(kind: str, fill=None) -> Rule:
    """torch.rand_like/randn_like (random sites) and zeros_like/ones_like/empty_like/full_like."""
    def rule(t: Translator, node: fx.Node) -> None:
        x = node.args[0]
        layout = t.value(x).layout
        kw = {"dtype": _dtype_arg(t, node.kwargs.get("dtype"))}
        if kind != "full":
            kw["like"] = True
        if kind == "full":
            value = fill if fill is not None else arg(node, 1, "fill_value")
            t.emit("full_like", (t.tensor(x, layout), t.static(value)), kw, layout=layout, flax="jnp.full_like")
        else:
            t.emit(kind, (t.tensor(x, layout),), kw, layout=layout, random=True,
                   flax=f"jax.random.{kind} shaped like its input (a random site)")
    return rule


def _bernoulli(t: Translator, node: fx.Node) -> None:
    """torch.bernoulli(probabilities), x.bernoulli(), x.bernoulli_(p): a random site."""
    x = node.args[0]
    p = arg(node, 1, "p", None)
    if isinstance(p, fx.Node) and t.is_tensor(p):
        raise t.fail(f"{target_name(node)} with a tensor p is not ported")
    layout = t.value(x).layout
    t.emit("bernoulli", (t.tensor(x, layout),), {"p": None if p is None else float(p)}, layout=layout, random=True,
           flax="jax.random.bernoulli (a random site)", inplace_of=_inplace(t, node))


def _cast(dtype: str | None) -> Rule:
    """x.float() / x.double() / x.to(dtype or device) / x.type_as(y): a dtype cast (devices are ignored)."""
    def rule(t: Translator, node: fx.Node) -> None:
        x = node.args[0]
        layout = t.value(x).layout
        target = dtype if dtype is not None else arg(node, 1, "dtype", node.kwargs.get("other"))
        if isinstance(target, (str, torch.dtype)) and not isinstance(target, str) or target in ("float32", "float64"):
            to = target if isinstance(target, str) else _dtype_arg(t, target)
        elif isinstance(target, fx.Node):  # another tensor (its dtype), a traced x.dtype, or a device (None)
            to = t.tensor(target, t.value(target).layout) if t.is_tensor(target) else t.static(target)
        else:  # a device
            to = None
        t.emit("cast", (t.tensor(x, layout), to), layout=layout, flax="astype" if to is not None else "identity")
    return rule


def _dim(t: Translator, node: fx.Node) -> None:
    t.emit("dim", (Ref(t.value(node.args[0]).name),), layout=META, flax="ndim")


def _expand_as(t: Translator, node: fx.Node) -> None:
    x, other = node.args[0], node.args[1]
    both4 = t.value(x).rank == 4 and t.value(other).rank == 4
    layout = NHWC if both4 else PLAIN
    t.emit("expand_as", (t.tensor(x, layout), t.tensor(other, layout)), layout=layout, flax="jnp.broadcast_to")


def _clamp(t: Translator, node: fx.Node) -> None:
    x = node.args[0]
    lo, hi = arg(node, 1, "min", None), arg(node, 2, "max", None)
    if any(isinstance(b, fx.Node) and t.is_tensor(b) for b in (lo, hi)):
        raise t.fail("clamp with tensor bounds is not ported")
    layout = t.value(x).layout
    t.emit("clamp", (t.tensor(x, layout), t.static(lo), t.static(hi)), layout=layout, flax="jnp.clip",
           inplace_of=_inplace(t, node))


def pad_rule(t: Translator, node) -> None:
    """F.pad / the padding modules: constant (negative widths crop), reflect, replicate, circular."""
    x, pad = node.args[0], arg(node, 1, "pad")
    mode, value = arg(node, 2, "mode", "constant"), arg(node, 3, "value", None)
    v = t.value(x)
    pad = [int(p) for p in pad]
    widths = [(0, 0)] * v.rank
    for i in range(len(pad) // 2):  # torch lists the last dim first
        widths[v.rank - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    layout = v.layout
    if layout == NHWC:
        widths = [widths[d] for d in (0, 2, 3, 1)]
    if mode == "constant":
        t.emit("pad", (t.tensor(x, layout), tuple(widths), float(value or 0.0)), layout=layout,
               flax="lax.pad (per side, negative crops)")
    elif mode in ("reflect", "replicate", "circular"):
        if min(pad) < 0:
            raise t.fail(f"F.pad(mode={mode!r}) with negative widths is not ported")
        t.emit("pad_mode", (t.tensor(x, layout), tuple(widths), mode), layout=layout,
               flax=f"jnp.pad ({mode}: numpy's {dict(reflect='reflect', replicate='edge', circular='wrap')[mode]})")
    else:
        raise t.fail(f"F.pad(mode={mode!r}) is not ported")


def interpolate_rule(t: Translator, node) -> None:
    """F.interpolate / nn.Upsample: nearest, nearest-exact, bilinear (both align_corners), area; the output
    size is the traced one, and a given scale_factor enters the index rule as torch uses it."""
    x = node.args[0]
    mode = arg(node, 3, "mode", "nearest")
    align = arg(node, 4, "align_corners", None)
    scale = arg(node, 2, "scale_factor", None)
    recompute = arg(node, 5, "recompute_scale_factor", None)
    if arg(node, 6, "antialias", False):
        raise t.fail("F.interpolate(antialias=True) is not ported")
    v = t.value(x)
    if v.rank != 4:
        raise t.fail(f"F.interpolate on a {v.rank}-D input is not ported (4-D only)")
    out_hw = tuple(int(s) for s in (t.node.meta["concrete"].shape[2:]))
    scales = (None, None) if scale is None or recompute else (
        (float(scale),) * 2 if isinstance(scale, (int, float)) else tuple(float(s) for s in scale))
    ref = t.tensor(x, NHWC)
    if mode == "bilinear":
        t.note("bilinear upsampling: torch's source index ((o + 0.5) / scale - 0.5, clamped at 0; corners "
               "with align_corners=True) and weights, not jax.image.resize")
        t.emit("upsample_bilinear", (ref, out_hw, scales, bool(align)), layout=NHWC,
               flax=f"upsample_bilinear (torch's index rule, align_corners={bool(align)})")
    elif mode in ("nearest", "nearest-exact"):
        t.emit("upsample_nearest", (ref, out_hw, scales, mode == "nearest-exact"), layout=NHWC,
               flax=f"upsample_nearest (torch's {'half-pixel' if mode == 'nearest-exact' else 'floor'} rule)")
    elif mode == "area":
        t.emit("adaptive_avg_pool2d", (ref, out_hw), layout=NHWC, flax="adaptive_avg_pool2d (mode='area')")
    else:
        raise t.fail(f"F.interpolate(mode={mode!r}) is not ported")


def pixel_shuffle_rule(t: Translator, node) -> None:
    t.emit("pixel_shuffle", (t.tensor(node.args[0], NHWC), int(arg(node, 1, "upscale_factor"))), layout=NHWC,
           flax="pixel_shuffle (torch's channel order)")


def pixel_unshuffle_rule(t: Translator, node) -> None:
    t.emit("pixel_unshuffle", (t.tensor(node.args[0], NHWC), int(arg(node, 1, "downscale_factor"))), layout=NHWC,
           flax="pixel_unshuffle (torch's channel order)")


def _conv2d(t: Translator, node: fx.Node) -> None:
    """F.conv2d with a weight computed in forward (weight standardisation): the weight stays OIHW."""
    x, w = node.args[0], arg(node, 1, "weight")
    bias = arg(node, 2, "bias", None)
    stride, padding = pair(arg(node, 3, "stride", 1)), arg(node, 4, "padding", 0)
    dilation, groups = pair(arg(node, 5, "dilation", 1)), int(arg(node, 6, "groups", 1))
    kh, kw = t.value(w).shape[2:]
    if padding == "valid":
        pads = ((0, 0), (0, 0))
    elif padding == "same":
        pads = tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip((kh, kw), dilation))
    else:
        ph, pw = pair(padding)
        pads = ((ph, ph), (pw, pw))
    b = t.tensor(bias, PLAIN) if isinstance(bias, fx.Node) else None
    t.emit("conv2d_oihw", (t.tensor(x, NHWC), t.tensor(w, PLAIN), b, stride, pads, dilation, groups), layout=NHWC,
           flax="conv2d_oihw (a kernel computed in forward, OIHW -> HWIO per call)")


def _layer_norm(t: Translator, node: fx.Node) -> None:
    x, shape = node.args[0], arg(node, 1, "normalized_shape")
    w, b, eps = arg(node, 2, "weight", None), arg(node, 3, "bias", None), float(arg(node, 4, "eps", 1e-5))
    refs = tuple(t.tensor(a, PLAIN) if isinstance(a, fx.Node) else None for a in (w, b))
    t.emit("layer_norm", (t.tensor(x, PLAIN), len(tuple(shape)), *refs, eps), layout=PLAIN,
           flax="layer_norm (biased variance, last dims)")


def _group_norm(t: Translator, node: fx.Node) -> None:
    x, groups = node.args[0], int(arg(node, 1, "num_groups"))
    w, b, eps = arg(node, 2, "weight", None), arg(node, 3, "bias", None), float(arg(node, 4, "eps", 1e-5))
    refs = tuple(t.tensor(a, PLAIN) if isinstance(a, fx.Node) else None for a in (w, b))
    t.emit("group_norm", (t.tensor(x, NHWC), groups, *refs, eps), layout=NHWC, flax="group_norm (biased variance)")


def _prelu(t: Translator, node: fx.Node) -> None:
    x, w = node.args[0], arg(node, 1, "weight")
    layout = t.value(x).layout
    t.emit("prelu", (t.tensor(x, layout), t.tensor(w, PLAIN)), {"nhwc": layout == NHWC}, layout=layout,
           flax="prelu (a slope per channel)")


def _adaptive_max(t: Translator, node: fx.Node) -> None:
    if arg(node, 2, "return_indices", False):
        raise t.fail("F.adaptive_max_pool2d(return_indices=True) is not ported")
    x, size = node.args[0], adaptive_size(arg(node, 1, "output_size"))
    t.emit("adaptive_max_pool2d", (t.tensor(x, NHWC), size), layout=NHWC, flax="adaptive_max_pool2d (torch bins)")


def _where(t: Translator, node: fx.Node) -> None:
    c, a, b = node.args[:3]
    tensors = [v for v in (c, a, b) if t.is_tensor(v)]
    layout = NHWC if {t.value(v).rank for v in tensors} == {4} else PLAIN
    refs = tuple(t.tensor(v, layout) if t.is_tensor(v) else t.static(v) for v in (c, a, b))
    t.emit("where", refs, layout=layout, flax="jnp.where")


def _stack(t: Translator, node: fx.Node) -> None:
    xs, dim = arg(node, 0, "tensors"), arg(node, 1, "dim", 0)
    t.emit("stack", (tuple(t.tensor(x, PLAIN) for x in xs),), {"axis": int(dim)}, layout=PLAIN, flax="jnp.stack")


def _linear_fn(t: Translator, node: fx.Node) -> None:
    x, w, b = node.args[0], arg(node, 1, "weight"), arg(node, 2, "bias", None)
    refs = (t.tensor(x, PLAIN), t.tensor(w, PLAIN), t.tensor(b, PLAIN) if isinstance(b, fx.Node) else None)
    t.emit("linear", refs, layout=PLAIN, flax="x @ weight.T + bias")


_ELEMENTWISE = ("sqrt", "rsqrt", "exp", "log", "abs", "floor", "ceil", "round", "erf", "square", "reciprocal")

_ACT = {
    "relu": (), "relu6": (), "silu": (), "sigmoid": (), "tanh": (), "hardswish": (), "hardsigmoid": (),
    "leaky_relu": (("negative_slope", 1, 0.01),), "gelu": (("approximate", 1, "none"),),
    "elu": (("alpha", 1, 1.0),), "softplus": (("beta", 1, 1.0), ("threshold", 2, 20.0)), "mish": (),
    "hardtanh": (("min_val", 1, -1.0), ("max_val", 2, 1.0)),
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
    operator.floordiv: binary("floordiv"), operator.mod: binary("mod"), operator.pow: binary("pow"),
    operator.lt: binary("lt"), operator.le: binary("le"), operator.gt: binary("gt"), operator.ge: binary("ge"),
    operator.eq: binary("eq"), operator.ne: binary("ne"),
    torch.chunk: _chunk, torch.split: _split,
    torch.rand: _factory("uniform"), torch.randn: _factory("normal"), torch.zeros: _factory("full", 0.0),
    torch.ones: _factory("full", 1.0), torch.empty: _factory("full", 0.0), torch.full: _factory("full"),
    torch.rand_like: _like("uniform"), torch.randn_like: _like("normal"), torch.zeros_like: _like("full", 0.0),
    torch.ones_like: _like("full", 1.0), torch.empty_like: _like("full", 0.0), torch.full_like: _like("full"),
    torch.bernoulli: _bernoulli, torch.clamp: _clamp, torch.clip: _clamp,
    torch.cat: _cat, torch.concat: _cat, torch.concatenate: _cat,
    torch.flatten: _flatten, torch.reshape: _view,
    torch.mean: _reduce("mean"), torch.sum: _reduce("sum"),
    torch.permute: _plain("permute", ("dims",)), torch.transpose: _plain("transpose", ("dim0", "dim1")),
    operator.getitem: _getitem, builtins.getattr: _getattr,
    F.pad: pad_rule, F.dropout: _dropout,
    F.max_pool2d: _pool("max_pool2d"), F.avg_pool2d: _pool("avg_pool2d"), F.adaptive_avg_pool2d: _adaptive_avg,
    F.softmax: _softmax("softmax"), torch.softmax: _softmax("softmax"),
    torch.squeeze: _plain("squeeze", ("dim",)), torch.unsqueeze: _plain("unsqueeze", ("dim",)),
    F.log_softmax: _softmax("log_softmax"), torch.log_softmax: _softmax("log_softmax"),
    F.elu: unary("elu", _ACT["elu"]), F.mish: unary("mish"), F.softplus: unary("softplus", _ACT["softplus"]),
    F.hardtanh: unary("hardtanh", _ACT["hardtanh"]), F.prelu: _prelu,
    **{getattr(torch, n): unary(n) for n in _ELEMENTWISE if hasattr(torch, n)},
    torch.pow: binary("pow"), torch.maximum: binary("maximum"), torch.minimum: binary("minimum"),
    torch.matmul: binary("matmul"), operator.matmul: binary("matmul"),
    torch.max: _max_min("max"), torch.min: _max_min("min"), torch.amax: _reduce("amax"), torch.amin: _reduce("amin"),
    torch.var: _reduce("var"), torch.std: _reduce("std"), torch.where: _where, torch.stack: _stack,
    F.conv2d: _conv2d, F.layer_norm: _layer_norm, F.group_norm: _group_norm, F.linear: _linear_fn,
    F.interpolate: interpolate_rule, F.upsample: interpolate_rule, F.pixel_shuffle: pixel_shuffle_rule,
    F.pixel_unshuffle: pixel_unshuffle_rule, torch.pixel_shuffle: pixel_shuffle_rule,
    torch.pixel_unshuffle: pixel_unshuffle_rule, F.adaptive_max_pool2d: _adaptive_max,
}

METHOD_RULES: dict[str, Rule] = {
    **{name: unary(name, _ACT[name]) for name in ("relu", "sigmoid", "tanh")},
    "relu_": unary("relu"), "sigmoid_": unary("sigmoid"), "tanh_": unary("tanh"),
    "add": binary("add"), "add_": binary("add"), "sub": binary("sub"), "sub_": binary("sub"),
    "mul": binary("mul"), "mul_": binary("mul"), "div": binary("div"), "div_": binary("div"),
    "neg": _same("neg"),
    "chunk": _chunk, "split": _split, "bernoulli": _bernoulli, "bernoulli_": _bernoulli,
    "float": _cast("float32"), "double": _cast("float64"), "to": _cast(None), "type_as": _cast(None),
    "dim": _dim, "expand_as": _expand_as, "clamp": _clamp, "clamp_": _clamp, "clip": _clamp,
    "silu": unary("silu"), "relu6": unary("relu6"), "hardswish": unary("hardswish"),
    "squeeze": _plain("squeeze", ("dim",)), "unsqueeze": _plain("unsqueeze", ("dim",)),
    "flatten": _flatten, "view": _view, "reshape": _view, "size": _size,
    "mean": _reduce("mean"), "sum": _reduce("sum"),
    "permute": _plain("permute", ("dims",)), "transpose": _plain("transpose", ("dim0", "dim1")),
    "contiguous": _same("identity"), "clone": _same("identity"), "detach": _same("stop_gradient"),
    "softmax": _softmax("softmax"), "log_softmax": _softmax("log_softmax"),
    **{n: unary(n) for n in _ELEMENTWISE}, **{n + "_": unary(n) for n in _ELEMENTWISE},
    "pow": binary("pow"), "pow_": binary("pow"), "matmul": binary("matmul"), "maximum": binary("maximum"),
    "minimum": binary("minimum"), "max": _max_min("max"), "min": _max_min("min"), "amax": _reduce("amax"),
    "amin": _reduce("amin"), "var": _reduce("var"), "std": _reduce("std"),
}
softmax_rule = _softmax


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
