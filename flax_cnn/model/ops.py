"""Convolution kernels for the Flax twin (NHWC activations, HWIO kernels), chosen per backend.

Every conv pads symmetrically by an explicit amount, as torch's `padding=` does. XLA's 'SAME'
pads a stride-2 3×3 conv on an even map by (0, 1) instead of (1, 1) — a parity trap.

Two formulations (`FORMULATIONS`), picked when a step is traced, never at run time: "xla", XLA's
native convolution for every conv (`feature_group_count` for depthwise; GPU and TPU, where cuDNN or
the TPU compiler own the conv), and "cpu_tuned" (the default on CPU). `formulation(name)` or
$FLAX_CNN_OPS overrides the choice; `pinned` fixes it for a function traced later (`jax.jit`).

"cpu_tuned", each form measured on the train step (`python -m parity.bench`; docs/performance.md):
- depthwise: k×k shifted multiply-adds (XLA:CPU's `feature_group_count` conv is 15-40× slower),
  the weight gradient as one fused reduction over all taps;
- strided dense convs: XLA's forward, with a custom backward — the input gradient as one dot
  plus a col2im by output phase (XLA's transposed strided conv mostly multiplies zeros), the
  weight gradient XLA's own on the stored input (it beat k×k per-tap dots);
- other dense convs: XLA's own convolution (Eigen), which beat im2col and shifted-dot forms, with
  a backward that reads the stored input instead of recomputing it (`_stored`).
All are the same math as `lax.conv_general_dilated`: in float64 they agree to 1e-15.
The depthwise kernel is also the one of ported models: `parity.port.emit` copies `depthwise_conv2d`
and what it uses into each emitted model.py, so those definitions use jax and functools only.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")


def _out(size: int, k: int, stride: int, dilation: int, padding: int) -> int:
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def _taps(x, k: int, stride: int, dilation: int, padding: int, ho: int, wo: int) -> list:
    """The k*k shifted, strided views of the zero-padded input, in (kh, kw) order."""
    n, _, _, c = x.shape
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    return [lax.slice(xp, (0, i * dilation, j * dilation, 0),
                      (n, i * dilation + (ho - 1) * stride + 1, j * dilation + (wo - 1) * stride + 1, c),
                      (1, stride, stride, 1))
            for i in range(k) for j in range(k)]


def _untaps(gt, k: int, stride: int, dilation: int, padding: int, h: int, w: int):
    """Adjoint of `_taps`: gt (N, Ho, Wo, k*k, C) summed back onto the (N, H, W, C) input.

    Built per output phase (y mod stride, x mod stride): each phase sums only the taps that land
    on it, shifted by whole rows and columns, and the phases are interleaved at the end — 9 terms
    per 4 outputs for a 3×3 stride-2 conv, where zero-interleaved placements cost 9 per output.
    """
    n, ho, wo, _, c = gt.shape
    mh, mw = -(-h // stride), -(-w // stride)
    zero = jnp.zeros((), gt.dtype)

    def shifts(phase: int) -> list[tuple[int, int]]:
        """(tap index, shift in strided rows) of the taps that land on this phase."""
        return [(i, (i * dilation - padding - phase) // stride) for i in range(k)
                if (i * dilation - padding - phase) % stride == 0]

    rows = []
    for a in range(stride):
        cols = []
        for b in range(stride):
            terms = [lax.pad(gt[:, :, :, i * k + j, :], zero,
                             ((0, 0, 0), (qi, mh - ho - qi, 0), (qj, mw - wo - qj, 0), (0, 0, 0)))
                     for i, qi in shifts(a) for j, qj in shifts(b)]
            cols.append(sum(terms[1:], terms[0]) if terms else jnp.zeros((n, mh, mw, c), gt.dtype))
        rows.append(jnp.stack(cols, 3).reshape(n, mh, mw * stride, c))  # columns interleaved
    # One merge per reshape: JAX's explicit-sharding rules reject merging two dim pairs at once.
    return jnp.stack(rows, 2).reshape(n, mh * stride, mw * stride, c)[:, :h, :w]


def _with_backward(forward, bwd):
    """`forward(x, w, stride, dilation, padding)` as a custom VJP that saves (x, w) and differentiates with `bwd`."""
    @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
    def conv(x, w, stride: int, dilation: int, padding: int):
        return forward(x, w, stride, dilation, padding)

    conv.defvjp(lambda x, w, *static: (conv(x, w, *static), (x, w)), bwd)
    return conv


def _acc(dtype):
    """The accumulation dtype of a sum of `dtype` terms: at least float32, as a conv kernel accumulates."""
    return jnp.promote_types(dtype, jnp.float32)


def _shifted_madd(x, w, stride: int, dilation: int, padding: int):
    """Depthwise conv, x (N,H,W,C), w (k,k,1,C), as a sum of k*k strided slices times weights.

    Summed in at least float32 and rounded once (bf16 inputs), like a conv kernel and torch's.
    """
    k, dtype = w.shape[0], x.dtype
    x, w = x.astype(_acc(dtype)), w.astype(_acc(dtype))
    ho, wo = _out(x.shape[1], k, stride, dilation, padding), _out(x.shape[2], k, stride, dilation, padding)
    acc = None
    for t, tap in enumerate(_taps(x, k, stride, dilation, padding, ho, wo)):
        term = tap * w[t // k, t % k, 0]
        acc = term if acc is None else acc + term
    return acc.astype(dtype)


def _tap_sums(x, g, k: int, stride: int, dilation: int, padding: int):
    """The depthwise weight gradient: each tap of `x` times `g`, summed over N, H, W, as (k, k, 1, C).

    One variadic reduce over H, W for all k*k taps (a single fused pass over `x` and `g`), then
    the batch sum. Autodiff instead writes every tap out for its own reduction (2× slower alone
    at 128×16×16×48); reducing N, H, W at once is slower still and its long float32 sums lose
    digits (7e-6 vs 4e-7 relative).
    """
    x, g = x.astype(_acc(x.dtype)), g.astype(_acc(g.dtype))  # bf16: sums in float32
    taps = _taps(x, k, stride, dilation, padding, g.shape[1], g.shape[2])
    zero = jnp.zeros((), g.dtype)
    sums = lax.reduce([t * g for t in taps], [zero] * len(taps),
                      lambda a, b: [u + v for u, v in zip(a, b)], (1, 2))
    return jnp.stack(sums).sum(1).reshape(k, k, 1, g.shape[-1])


def _depthwise_bwd(stride, dilation, padding, res, g):
    """Autodiff's input gradient; the weight gradient from `_tap_sums`."""
    x, w = res
    _, vjp_x = jax.vjp(lambda v: _shifted_madd(v, w, stride, dilation, padding), x)
    return vjp_x(g)[0], _tap_sums(x, g, w.shape[0], stride, dilation, padding).astype(w.dtype)


_depthwise = _with_backward(_shifted_madd, _depthwise_bwd)


def depthwise_conv2d(x, w, *, stride: int, dilation: int, padding: int):
    """Depthwise conv, x (N,H,W,C), w (k,k,1,C): k*k shifted multiply-adds, weight gradient by `_tap_sums`."""
    return _depthwise(x, w, stride, dilation, padding)


def dense_conv2d(x, w, *, stride: int = 1, dilation: int = 1, padding: int = 0, groups: int = 1):
    """A regular (or grouped) conv through XLA's convolution with explicit symmetric padding."""
    return lax.conv_general_dilated(
        x, w, window_strides=(stride, stride), padding=((padding, padding), (padding, padding)),
        rhs_dilation=(dilation, dilation), dimension_numbers=_DIMS, feature_group_count=groups)


def _stored(x, w):
    """`x` behind an identity XLA cannot see through (on CPU), so the backward reads the stored tensor.

    Otherwise XLA recomputes the BatchNorm+ReLU that produced `x` inside the NHWC→CHWN transpose
    its weight-gradient conv needs: a loop with strided reads, 3-4× slower than transposing the
    stored tensor (18.9 → 5.6 ms at 128×32×32×24). The identity is a conditional on a predicate
    that is always true but not foldable (`optimization_barrier` is removed before fusion); it is
    taken from the replicated weights `w`, so a batch sharded over devices needs no communication.
    Not on GPU, where a conditional's predicate goes through the host.
    """
    if jax.default_backend() != "cpu":
        return x
    bits = lax.bitcast_convert_type(w.reshape(-1)[0], jnp.dtype(f"int{8 * w.dtype.itemsize}"))
    return lax.cond((bits | 1) != 0, lambda v: v, jnp.zeros_like, x)


def _stored_bwd(stride, dilation, padding, res, g):
    """XLA's own conv backward, applied to `_stored(x)`."""
    x, w = res
    _, vjp = jax.vjp(functools.partial(dense_conv2d, stride=stride, dilation=dilation, padding=padding),
                     _stored(x, w), w)
    return vjp(g)


def _strided_bwd(stride, dilation, padding, res, g):
    """Stride > 1: the input gradient as one dot plus a col2im, the weight gradient XLA's own.

    XLA's weight gradient of a strided conv (Eigen, on the stored input) beat k×k per-tap batched
    dots, which write k×k strided copies of the input: 0.93-1.01× the step time in five A/Bs.
    """
    x, w = res
    n, h, wd, ci = x.shape
    k, co = w.shape[0], w.shape[-1]
    ho, wo = g.shape[1], g.shape[2]
    gt = jnp.einsum("bhwo,ko->bhwk", g, w.reshape(k * k * ci, co),
                    preferred_element_type=_acc(g.dtype)).reshape(n, ho, wo, k * k, ci)  # bf16: rounded once, below
    gw = _stored_bwd(stride, dilation, padding, res, g)[1]  # under jit its unused input gradient is dead code
    return _untaps(gt, k, stride, dilation, padding, h, wd).astype(x.dtype), gw


def _dense(x, w, stride: int, dilation: int, padding: int):
    return dense_conv2d(x, w, stride=stride, dilation=dilation, padding=padding)


stored_conv2d = _with_backward(_dense, _stored_bwd)
strided_conv2d = _with_backward(_dense, _strided_bwd)


def _xla(x, w, stride: int, dilation: int, padding: int):
    """XLA's own convolution and its autodiff backward, groups read off the shapes (HWIO: I = C / groups)."""
    return dense_conv2d(x, w, stride=stride, dilation=dilation, padding=padding, groups=x.shape[-1] // w.shape[2])


def _kind(x, w, stride: int, groups: int) -> str:
    """depthwise, strided (dense, square kernel, stride > 1), dense (stride 1), or grouped."""
    if groups > 1 and groups == x.shape[-1] and w.shape[2] == 1 and w.shape[3] == groups:
        return "depthwise"
    if groups == 1:
        return "strided" if stride > 1 and w.shape[0] == w.shape[1] else "dense"
    return "grouped"


# formulation -> conv kind -> kernel(x, w, stride, dilation, padding)
FORMULATIONS: dict[str, dict[str, Callable]] = {
    "xla": {"depthwise": _xla, "strided": _xla, "dense": _xla, "grouped": _xla},
    "cpu_tuned": {"depthwise": _depthwise, "strided": strided_conv2d, "dense": stored_conv2d, "grouped": _xla},
}
ENV = "FLAX_CNN_OPS"
_ACTIVE: contextvars.ContextVar[str | None] = contextvars.ContextVar("flax_cnn_ops_formulation", default=None)


def _check(name: str) -> str:
    if name not in FORMULATIONS:
        raise ValueError(f"unknown conv formulation {name!r}; choose from {', '.join(FORMULATIONS)}")
    return name


def default_formulation() -> str:
    """$FLAX_CNN_OPS if set, else "cpu_tuned" on XLA:CPU and "xla" on every other backend."""
    if os.environ.get(ENV):
        return _check(os.environ[ENV])
    return "cpu_tuned" if jax.default_backend() == "cpu" else "xla"


def active_formulation() -> str:
    """The formulation `conv2d` traces with here: the innermost `formulation(...)`, else the default."""
    return _ACTIVE.get() or default_formulation()


@contextlib.contextmanager
def formulation(name: str) -> Iterator[str]:
    """Trace convs inside this block with formulation `name` ("xla" or "cpu_tuned")."""
    token = _ACTIVE.set(_check(name))
    try:
        yield name
    finally:
        _ACTIVE.reset(token)


def pinned(fn: Callable) -> Callable:
    """`fn` tracing under the formulation active now, whenever it is traced (jit traces at its first call)."""
    name = active_formulation()

    @functools.wraps(fn)
    def under(*args, **kwargs):
        with formulation(name):
            return fn(*args, **kwargs)

    return under


def conv2d(x, w, *, stride: int = 1, dilation: int = 1, padding: int = 0, groups: int = 1):
    """The conv through the active formulation's kernel for its kind (decided at trace time)."""
    w = w.astype(x.dtype)
    if x.shape[-1] != w.shape[2] * groups:
        raise ValueError(f"conv2d: {x.shape[-1]} input channels, kernel {w.shape} with groups={groups}")
    return FORMULATIONS[active_formulation()][_kind(x, w, stride, groups)](x, w, stride, dilation, padding)


def cpu_compiler_options() -> dict[str, str] | None:
    """XLA:CPU options for our jitted steps (None elsewhere).

    jaxlib 0.10's XLA:CPU hands float32 convolutions to YNNPACK by default, which runs this model's
    convs 2× (forward) to 12× (weight gradient on 32×32 maps) slower than XLA's own Eigen kernels;
    keeping YNNPACK for reductions only makes BatchNorm's sums 3-4× faster than XLA's loops.
    """
    if jax.default_backend() != "cpu":
        return None
    return {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}
