"""MACs and receptive field of any Flax module, read from the jaxpr of one eval-mode forward.

For models that are not a `ModelConfig` (`--flax-model`, `--torch-model`): `analysis` computes the
twin's numbers from its config, this computes them from the program, so the two can be checked
against each other on the twin. MACs count convolutions (a transposed one by its real inputs, as torch counts it)
and matmuls. The receptive field is propagated through the program — kernel (k - 1) * dilation *
jump, then jump * stride — up to where the spatial axes are reduced away (a mean, a flatten of a
1x1 map, a pool whose window covers the whole map); an op that moves pixels in a way the rules do
not know (a gather, a reshape of a spatial map) makes it unknown (None).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.extend import core as jcore
from flax import nnx


@dataclass(frozen=True)
class Spatial:
    """A value with two spatial axes: where they are, and the receptive field / jump of one position."""

    axes: tuple[int, int]
    rf: float
    jump: float


@dataclass(frozen=True)
class Split:
    """A spatial value reshaped to (..., H/a, a, ..., W/b, b, ...): axes of the blocks and of the pixels in them."""

    outer: tuple[int, int]
    inner: tuple[int, int]
    window: tuple[int, int]
    spatial: Spatial


UNKNOWN = "unknown"  # a spatial value an op moved in a way the rules cannot follow

# Ops that act position by position: the output's pixels see what their inputs' pixels saw.
_POINTWISE = {
    "add", "sub", "mul", "div", "max", "min", "neg", "exp", "log", "log1p", "expm1", "tanh", "logistic",
    "rsqrt", "sqrt", "abs", "sign", "select_n", "convert_element_type", "integer_pow", "pow", "erf", "erfc",
    "erf_inv", "square", "ge", "gt", "le", "lt", "eq", "ne", "and", "or", "not", "clamp", "copy", "copy_p",
    "stop_gradient", "floor", "ceil", "round", "nextafter", "sin", "cos", "atan2", "is_finite", "rem",
    "reduce_precision", "exp2", "cbrt", "tan", "asinh",
}
# Reductions over some axes: global if they remove both spatial axes, channel-wise (pointwise) if none.
_REDUCE = {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin", "reduce_and", "reduce_or"}
_CALLS = {"jit", "pjit", "custom_jvp_call", "custom_vjp_call", "closed_call", "remat", "checkpoint"}
_WINDOW = {"reduce_window_sum", "reduce_window_max", "reduce_window_min", "reduce_window"}


@dataclass
class TraceStats:
    macs: int  # per image
    receptive_field: int | None  # pixels, one side; None where the rules cannot follow the program
    blocked_by: str | None = None  # the primitive that made it None


class _Walk:
    """One pass over a jaxpr: MACs summed, and a `Spatial` / `Split` / UNKNOWN / None per value."""

    def __init__(self, batch: int):
        self.batch = batch
        self.macs = 0
        self.global_rfs: list[float] = []  # the field of every value whose spatial axes were reduced away
        self.unknown_at_global = False
        self.blocked_by: str | None = None  # the first op the rules could not follow

    def run(self, jaxpr, env_in: list) -> list:
        env: dict = dict(zip(jaxpr.invars, env_in))
        for e in jaxpr.eqns:
            ins = [env.get(v) if isinstance(v, jcore.Var) else None for v in e.invars]
            env.update(zip(e.outvars, self.eqn(e, ins)))
        return [env.get(v) if isinstance(v, jcore.Var) else None for v in jaxpr.outvars]

    def unknown(self, e):
        self.blocked_by = self.blocked_by or e.primitive.name
        return UNKNOWN

    def reduced_away(self, s) -> None:
        if s is UNKNOWN or isinstance(s, Split):
            self.unknown_at_global = True
        else:
            self.global_rfs.append(s.rf)

    def eqn(self, e, ins: list) -> list:
        name, n_out = e.primitive.name, len(e.outvars)
        sub = next((p.jaxpr if isinstance(p, jcore.ClosedJaxpr) else p for p in e.params.values()
                    if isinstance(p, (jcore.ClosedJaxpr, jcore.Jaxpr))), None)
        if sub is not None and name in _CALLS:
            return self.run(sub, ins[len(ins) - len(sub.invars):])
        if name == "conv_general_dilated":
            return [self.conv(e, ins[0])]
        if name == "dot_general":
            self.dot(e)
        spatial = [i for i in ins if i is not None]
        if not spatial:
            return [None] * n_out
        if UNKNOWN in spatial:
            return [UNKNOWN] * n_out
        x, in_shape, out_shape = spatial[0], tuple(e.invars[0].aval.shape), tuple(e.outvars[0].aval.shape)
        if isinstance(x, Split):
            if len(spatial) == 1 and name in _POINTWISE and out_shape == in_shape:
                return [x] * n_out
            if len(spatial) == 1 and name in _REDUCE:
                return [self.pool_split(x, tuple(e.params["axes"]), e)] * n_out
            return [self.unknown(e)] * n_out
        if name == "broadcast_in_dim":
            dims = e.params["broadcast_dimensions"]
            return [Spatial((dims[x.axes[0]], dims[x.axes[1]]), x.rf, x.jump)]
        if name in _POINTWISE or (name == "concatenate" and e.params["dimension"] not in x.axes):
            return [self.pointwise(spatial, e, k, ins) for k in range(n_out)]  # concatenate: channels side by side
        if name in _REDUCE:
            return [self.reduce(x, tuple(e.params["axes"]), e)] * n_out
        if name in _WINDOW:
            return [self.window(x, e)] * n_out
        if name == "transpose":
            perm = tuple(e.params["permutation"])
            return [Spatial((perm.index(x.axes[0]), perm.index(x.axes[1])), x.rf, x.jump)]
        if name == "pad" and all(lo >= 0 and hi >= 0 and not mid for lo, hi, mid in e.params["padding_config"]):
            return [x]  # zeros round the map: the same pixels seen
        if name == "slice" and all(e.params["start_indices"][a] == 0 and e.params["limit_indices"][a] == in_shape[a]
                                   and (e.params["strides"] or (1,) * len(in_shape))[a] == 1 for a in x.axes):
            return [x]  # a channel chunk (Res2Net, Ghost): every pixel kept where it was
        if name == "dot_general" and ins[0] is x and len(spatial) == 1:
            (lc, _), (lb, _) = e.params["dimension_numbers"]
            if not lb and not set(lc) & set(x.axes):  # a Linear over channels (ConvNeXt's MLP): per pixel
                free = [a for a in range(len(in_shape)) if a not in lc]
                return [Spatial((free.index(x.axes[0]), free.index(x.axes[1])), x.rf, x.jump)]
        if name in ("reshape", "squeeze", "expand_dims", "dot_general"):
            return [self.reshape(x, e, in_shape, out_shape)]
        return [self.unknown(e)] * n_out

    def pointwise(self, spatial: list, e, k: int, ins: list):
        """Position by position: the widest field among the inputs, which must share axes, sizes and jump."""
        x = spatial[0]
        shape = tuple(e.invars[ins.index(x)].aval.shape)
        out = tuple(e.outvars[k].aval.shape)
        same = all(isinstance(s, Spatial) and s.axes == x.axes and s.jump == x.jump for s in spatial)
        if not same or len(out) <= max(x.axes) or any(out[a] != shape[a] for a in x.axes):
            return self.unknown(e)
        return max(spatial, key=lambda s: s.rf)

    def reshape(self, x: Spatial, e, old: tuple, new: tuple):
        """Global where the map is 1x1 (a flatten before the classifier); channel-only reshapes (a channel
        shuffle) keep the pixels; (H, W) -> (H/a, a, W/b, b) starts a pool written as reshape + mean."""
        if all(old[a] == 1 for a in x.axes):
            self.reduced_away(x)
            return None
        if e.primitive.name != "dot_general":
            a0, a1 = sorted(x.axes)
            span = old[a0:a1 + 1]
            for b0 in range(len(new) - len(span) + 1):  # the map kept whole, axes before/after regrouped
                if (new[b0:b0 + len(span)] == span and math.prod(new[:b0]) == math.prod(old[:a0])
                        and math.prod(new[b0 + len(span):]) == math.prod(old[a1 + 1:])):
                    shift = b0 - a0
                    return Spatial((x.axes[0] + shift, x.axes[1] + shift), x.rf, x.jump)
            if e.primitive.name == "reshape" and len(new) == len(old) + 2 and x.axes == (a0, a1):
                o0, i0, o1, i1 = a0, a0 + 1, a1 + 1, a1 + 2
                rest_old = [d for k, d in enumerate(old) if k not in x.axes]
                rest_new = [d for k, d in enumerate(new) if k not in (o0, i0, o1, i1)]
                if rest_old == rest_new and new[o0] * new[i0] == old[a0] and new[o1] * new[i1] == old[a1]:
                    return Split((o0, o1), (i0, i1), (new[i0], new[i1]), x)
        return self.unknown(e)

    def pool_split(self, sp: Split, axes: tuple, e):
        """The mean/max over a Split's inner axes: a pool of window = stride = the inner size."""
        if set(axes) != set(sp.inner):
            return self.unknown(e)
        x, k = sp.spatial, sp.window[0]
        out = e.outvars[0].aval.shape
        outer = [a - sum(1 for r in axes if r < a) for a in sp.outer]
        if all(out[a] == 1 for a in outer):
            self.reduced_away(x)
            return None
        return Spatial((outer[0], outer[1]), x.rf + (k - 1) * x.jump, x.jump * k)

    def reduce(self, x: Spatial, axes: tuple, e):
        hit = [a for a in x.axes if a in axes]
        if not hit:  # over channels (a LayerNorm's mean, torch.max over dim 1): per position
            kept = [a - sum(1 for r in axes if r < a) for a in x.axes]
            return Spatial((kept[0], kept[1]), x.rf, x.jump)
        if len(hit) == 2:
            self.reduced_away(x)
            return None
        return self.unknown(e)

    def window(self, x: Spatial, e):
        dims, strides = e.params["window_dimensions"], e.params["window_strides"]
        dil = e.params.get("window_dilation") or (1,) * len(dims)
        out_shape, in_shape = e.outvars[0].aval.shape, e.invars[0].aval.shape
        if all(out_shape[a] == 1 and dims[a] >= in_shape[a] > 1 for a in x.axes):
            self.reduced_away(x)  # a pool over the whole map: global average/max pooling
            return None
        k, st, d = dims[x.axes[0]], strides[x.axes[0]], dil[x.axes[0]]
        return Spatial(x.axes, x.rf + (k - 1) * d * x.jump, x.jump * st)

    def conv(self, e, x):
        dn = e.params["dimension_numbers"]
        lhs, rhs, out = e.invars[0].aval.shape, e.invars[1].aval.shape, e.outvars[0].aval.shape
        kh, kw = rhs[dn.rhs_spec[2]], rhs[dn.rhs_spec[3]]
        if any(d != 1 for d in e.params["lhs_dilation"]):  # transposed: count the real inputs, not the zeros
            self.macs += math.prod(lhs) * rhs[dn.rhs_spec[0]] // e.params["feature_group_count"] * kh * kw // self.batch
        else:
            self.macs += math.prod(out) * rhs[dn.rhs_spec[1]] * kh * kw // self.batch
        if x is None:
            return None
        if not isinstance(x, Spatial) or x.axes != (dn.lhs_spec[2], dn.lhs_spec[3]):
            return self.unknown(e)
        jump = x.jump / e.params["lhs_dilation"][0]  # a transposed conv runs on the input dilated by its stride
        rf = x.rf + (kh - 1) * e.params["rhs_dilation"][0] * jump
        return Spatial((dn.out_spec[2], dn.out_spec[3]), rf, jump * e.params["window_strides"][0])

    def dot(self, e):
        (lc, _), _ = e.params["dimension_numbers"]
        lhs = e.invars[0].aval.shape
        self.macs += math.prod(e.outvars[0].aval.shape) * math.prod(lhs[a] for a in lc) // self.batch


def trace_stats(model: nnx.Module, input_shape: tuple[int, int, int]) -> TraceStats:
    """MACs per image and receptive field of `model`'s eval-mode forward on an NHWC image of `input_shape`
    (H, W, C). Only shapes are traced: nothing is computed."""
    from flax_cnn.model import ops

    graphdef, state = nnx.split(model)
    merged = nnx.merge(graphdef, state)
    merged.eval()
    graphdef, state = nnx.split(merged)
    # The CPU kernels of the twin and of a port's model.py run a depthwise conv as shifted slices; traced
    # with XLA's own conv ($FLAX_CNN_OPS=xla, which both honour) each is one conv again.
    saved = os.environ.get(ops.ENV)
    os.environ[ops.ENV] = "xla"
    try:
        with ops.formulation("xla"):
            closed = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x))(
                state, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
    finally:
        if saved is None:
            os.environ.pop(ops.ENV, None)
        else:
            os.environ[ops.ENV] = saved
    walk = _Walk(batch=1)
    n_state = len(closed.jaxpr.invars) - 1
    ins = [None] * n_state + [Spatial((1, 2), 1.0, 1.0)]
    outs = walk.run(closed.jaxpr, ins)
    if walk.unknown_at_global:
        rf = None
    elif walk.global_rfs:
        rf = max(walk.global_rfs)
    else:  # a dense output: the receptive field of one output position
        dense = [o for o in outs if o is not None]
        rf = None if not dense or UNKNOWN in dense else max(o.rf for o in dense)
    return TraceStats(macs=int(walk.macs), receptive_field=None if rf is None else int(round(rf)),
                      blocked_by=walk.blocked_by if rf is None else None)
