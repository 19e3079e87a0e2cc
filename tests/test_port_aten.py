"""The Core ATen path: modules with no rule, lowered through torch's decompositions and ported op by op.

(a) every row of `aten.ATEN_RULES`, exercised inside a leaf module with no rule (a probe whose forward
calls the op), against torch in float64 (1e-12) and float32; (b) real torch.nn modules with no hand
written rule, in small CNNs; (c) the coverage numbers; and what stays a PortError.
"""

from __future__ import annotations

import copy
import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from flax import nnx

from torch import fx

from parity.port import PortError, aten, port, supported
from parity.port.aten import ATEN_RULES, core_ops, coverage
from parity.port.module_rules import module_rules

A = torch.ops.aten

# float32: one lowered op or a few, so XLA and ATen differ by summation order and the last ulp of a
# transcendental (~1e-7 relative); 1e-5 of the output's scale leaves room for the few-op chains.
TOL32 = 1e-5
TOL64 = 1e-12


class Probe(nn.Module):
    """A leaf module with no rule (fx treats torch.nn's modules as leaves): its forward calls ATen ops
    directly, so the port lowers it and the op under test meets its rule. Parameters and buffers are
    read in forward like any module's. The outputs come back as one flat vector in x's dtype."""

    def __init__(self, fn, **tensors):
        super().__init__()
        self.fn = fn
        for name, value in tensors.items():
            if isinstance(value, nn.Parameter):
                self.register_parameter(name, value)
            else:
                self.register_buffer(name, value)

    def forward(self, x):
        def flat(o):
            if o is None:  # an output a backward op's output_mask leaves out
                return []
            return [p for q in o for p in flat(q)] if isinstance(o, (tuple, list)) else [o.reshape(-1).to(x.dtype)]
        return torch.cat(flat(self.fn(self, x)))


Probe.__module__ = "torch.nn.modules.parity_probe"  # a leaf for fx, and no rule for the port


def P(*shape, seed=0):
    return nn.Parameter(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)))


def ints(x, scale=10):
    return (x * scale).to(torch.int64)


def C(fn, shape=(2, 3, 4, 5), positive=False, keep=(), direct=None, **tensors):
    """A case: `fn(probe, x)` calls the op. `keep`: overloads torch's decomposition table would lower further
    (the rule is then met with them kept); `direct`: (op, args) for an overload make_fx never records (a
    CompositeImplicit core op): the lowering is then exactly `op(x, *args)`."""
    return fn, shape, positive, tensors, keep, direct


def _idx(*values):
    return torch.tensor(values)


CASES = {
    # elementwise, unary
    "aten.abs.default": C(lambda m, x: A.abs(x)),
    "aten.ceil.default": C(lambda m, x: A.ceil(x * 3)),
    "aten.erf.default": C(lambda m, x: A.erf(x)),
    "aten.exp.default": C(lambda m, x: A.exp(x)),
    "aten.floor.default": C(lambda m, x: A.floor(x * 3)),
    "aten.log.default": C(lambda m, x: A.log(x), positive=True),
    "aten.neg.default": C(lambda m, x: A.neg(x)),
    "aten.reciprocal.default": C(lambda m, x: A.reciprocal(x), positive=True),
    "aten.round.default": C(lambda m, x: A.round(x * 3)),
    "aten.rsqrt.default": C(lambda m, x: A.rsqrt(x), positive=True),
    "aten.sigmoid.default": C(lambda m, x: A.sigmoid(x)),
    "aten.sqrt.default": C(lambda m, x: A.sqrt(x), positive=True),
    "aten.tanh.default": C(lambda m, x: A.tanh(x)),
    "aten.relu.default": C(lambda m, x: A.relu(x)),
    "aten.expm1.default": C(lambda m, x: A.expm1(x)),
    "aten.log1p.default": C(lambda m, x: A.log1p(x), positive=True),
    "aten.log2.default": C(lambda m, x: A.log2(x), positive=True),
    "aten.log10.default": C(lambda m, x: A.log10(x), positive=True),
    "aten.sin.default": C(lambda m, x: A.sin(x)),
    "aten.cos.default": C(lambda m, x: A.cos(x)),
    "aten.tan.default": C(lambda m, x: A.tan(x)),
    "aten.sinh.default": C(lambda m, x: A.sinh(x)),
    "aten.cosh.default": C(lambda m, x: A.cosh(x)),
    "aten.asin.default": C(lambda m, x: A.asin(A.tanh(x))),
    "aten.acos.default": C(lambda m, x: A.acos(A.tanh(x))),
    "aten.atan.default": C(lambda m, x: A.atan(x)),
    "aten.asinh.default": C(lambda m, x: A.asinh(x)),
    "aten.acosh.default": C(lambda m, x: A.acosh(x + 1), positive=True),
    "aten.atanh.default": C(lambda m, x: A.atanh(A.tanh(x))),
    "aten.trunc.default": C(lambda m, x: A.trunc(x * 3)),
    "aten.sign.default": C(lambda m, x: A.sign(x)),
    "aten.isinf.default": C(lambda m, x: A.isinf(A.log(A.relu(x)))),
    "aten.isnan.default": C(lambda m, x: A.isnan(A.sqrt(x))),
    "aten.logical_not.default": C(lambda m, x: A.logical_not(A.gt.Scalar(x, 0))),
    "aten.bitwise_not.default": C(lambda m, x: A.bitwise_not(ints(x))),
    # elementwise, binary
    "aten.mul.Tensor": C(lambda m, x: A.mul.Tensor(x, m.w), w=P(1, 3, 1, 5)),
    "aten.mul.Scalar": C(lambda m, x: A.mul.Scalar(x, 2.5)),
    "aten.div.Tensor": C(lambda m, x: A.div.Tensor(x, m.w), w=P(3, 4, 1)),
    "aten.div.Scalar": C(lambda m, x: A.div.Scalar(x, 3.0)),
    "aten.eq.Tensor": C(lambda m, x: A.eq.Tensor(A.round(x), A.round(x.flip(0)))),
    "aten.eq.Scalar": C(lambda m, x: A.eq.Scalar(A.round(x), 0)),
    "aten.ne.Tensor": C(lambda m, x: A.ne.Tensor(A.round(x), A.round(x.flip(0)))),
    "aten.ne.Scalar": C(lambda m, x: A.ne.Scalar(A.round(x), 0)),
    "aten.lt.Tensor": C(lambda m, x: A.lt.Tensor(x, m.w), w=P(5)),
    "aten.lt.Scalar": C(lambda m, x: A.lt.Scalar(x, 0.1)),
    "aten.le.Tensor": C(lambda m, x: A.le.Tensor(x, m.w), w=P(5)),
    "aten.le.Scalar": C(lambda m, x: A.le.Scalar(x, 0.1)),
    "aten.gt.Tensor": C(lambda m, x: A.gt.Tensor(x, m.w), w=P(5)),
    "aten.gt.Scalar": C(lambda m, x: A.gt.Scalar(x, 0.1)),
    "aten.ge.Tensor": C(lambda m, x: A.ge.Tensor(x, m.w), w=P(5)),
    "aten.ge.Scalar": C(lambda m, x: A.ge.Scalar(x, 0.1)),
    "aten.fmod.Tensor": C(lambda m, x: A.fmod.Tensor(x * 5, m.w), w=P(5)),
    "aten.fmod.Scalar": C(lambda m, x: A.fmod.Scalar(x * 5, 1.5)),
    "aten.remainder.Tensor": C(lambda m, x: A.remainder.Tensor(x * 5, m.w), w=P(5)),
    "aten.remainder.Scalar": C(lambda m, x: A.remainder.Scalar(x * 5, 1.5)),
    "aten.bitwise_and.Tensor": C(lambda m, x: A.bitwise_and.Tensor(ints(x), ints(x.flip(1)))),
    "aten.bitwise_and.Scalar": C(lambda m, x: A.bitwise_and.Scalar(ints(x), 6)),
    "aten.bitwise_or.Tensor": C(lambda m, x: A.bitwise_or.Tensor(ints(x), ints(x.flip(1)))),
    "aten.bitwise_or.Scalar": C(lambda m, x: A.bitwise_or.Scalar(ints(x), 6)),
    "aten.bitwise_xor.Tensor": C(lambda m, x: A.bitwise_xor.Tensor(ints(x), ints(x.flip(1)))),
    "aten.bitwise_xor.Scalar": C(lambda m, x: A.bitwise_xor.Scalar(ints(x), 6)),
    "aten.maximum.default": C(lambda m, x: A.maximum(x, m.w), w=P(4, 5)),
    "aten.minimum.default": C(lambda m, x: A.minimum(x, m.w), w=P(4, 5)),
    "aten.pow.Tensor_Scalar": C(lambda m, x: A.pow.Tensor_Scalar(x, 3)),
    "aten.pow.Tensor_Tensor": C(lambda m, x: A.pow.Tensor_Tensor(x, A.abs(m.w)), positive=True, w=P(5)),
    "aten.pow.Scalar": C(lambda m, x: A.pow.Scalar(1.5, x)),
    "aten.atan2.default": C(lambda m, x: A.atan2(x, x.flip(0))),
    "aten.logical_and.default": C(lambda m, x: A.logical_and(A.gt.Scalar(x, 0), A.lt.Scalar(x, 1))),
    "aten.logical_or.default": C(lambda m, x: A.logical_or(A.gt.Scalar(x, 1), A.lt.Scalar(x, -1))),
    "aten.logical_xor.default": C(lambda m, x: A.logical_xor(A.gt.Scalar(x, 0), A.lt.Scalar(x.flip(0), 0))),
    "aten.add.Tensor": C(lambda m, x: A.add.Tensor(x, m.w, alpha=0.5), w=P(3, 1, 1)),
    "aten.add.Scalar": C(lambda m, x: A.add.Scalar(x, 2.0)),
    "aten.sub.Tensor": C(lambda m, x: A.sub.Tensor(x, m.w, alpha=2), w=P(3, 1, 1)),
    "aten.sub.Scalar": C(lambda m, x: A.sub.Scalar(x, 2.0)),
    "aten.div.Tensor_mode": C(lambda m, x: torch.stack([A.div.Tensor_mode(x * 5, m.w, rounding_mode="trunc"),
                                                        A.div.Tensor_mode(x * 5, m.w, rounding_mode="floor")]),
                              w=P(5)),
    "aten.div.Scalar_mode": C(lambda m, x: torch.stack([A.div.Scalar_mode(x * 5, 1.5, rounding_mode="trunc"),
                                                        A.div.Scalar_mode(x * 5, 1.5, rounding_mode="floor")])),
    "aten.where.self": C(lambda m, x: A.where.self(A.gt.Scalar(x, 0), x, m.w), w=P(5)),
    "aten.clamp.default": C(lambda m, x: A.clamp.default(x, -0.5, 0.7)),
    "aten.clamp.Tensor": C(lambda m, x: A.clamp.Tensor(x, m.lo, m.lo + 1), lo=P(5)),
    "aten.hardtanh.default": C(lambda m, x: A.hardtanh(x, -0.5, 0.7)),
    "aten.leaky_relu.default": C(lambda m, x: A.leaky_relu(x, 0.2)),
    "aten.elu.default": C(lambda m, x: A.elu(x, 1.3, 1.05, 0.9)),
    "aten.gelu.default": C(lambda m, x: torch.stack([A.gelu(x), A.gelu(x, approximate="tanh")])),
    # reductions
    "aten.sum.dim_IntList": C(lambda m, x: (A.sum.dim_IntList(x, [1, 3]), A.sum.dim_IntList(x, [-1], True))),
    "aten.mean.dim": C(lambda m, x: (A.mean.dim(x, [2, 3], True), A.mean.dim(x, [0]))),
    "aten.mean.default": C(lambda m, x: A.mean.default(x)),
    "aten.amax.default": C(lambda m, x: (A.amax(x, [1]), A.amax(x, [2, 3], True))),
    "aten.amin.default": C(lambda m, x: (A.amin(x, [1]), A.amin(x, [2, 3], True))),
    "aten.any.default": C(lambda m, x: A.any.default(A.gt.Scalar(x, 2))),
    "aten.any.dim": C(lambda m, x: A.any.dim(A.gt.Scalar(x, 1), 1)),
    "aten.any.dims": C(lambda m, x: A.any.dims(A.gt.Scalar(x, 1), [1, 2], True)),
    "aten.prod.default": C(lambda m, x: A.prod.default(x[0, 0])),
    "aten.prod.dim_int": C(lambda m, x: A.prod.dim_int(x, 3, True)),
    "aten.argmax.default": C(lambda m, x: (A.argmax(x, 1), A.argmax(x), A.argmax(x, -1, True))),
    "aten.argmin.default": C(lambda m, x: (A.argmin(x, 1), A.argmin(x))),
    "aten.var.correction": C(lambda m, x: (A.var.correction(x, [1, 2], correction=0, keepdim=True),
                                           A.var.correction(x, [3]))),
    "aten.var.dim": C(lambda m, x: A.var.dim(x, [2, 3], True, True), direct=(A.var.dim, ([2, 3], True, True))),
    "aten.max.dim": C(lambda m, x: A.max.dim(x, 1, True)),
    "aten.min.dim": C(lambda m, x: A.min.dim(x, 2)),
    "aten.cumsum.default": C(lambda m, x: A.cumsum(x, 2)),
    "aten.sort.default": C(lambda m, x: (A.sort(x, 1), A.sort(x, -1, True))),
    "aten.topk.default": C(lambda m, x: (A.topk(x, 2, 3), A.topk(x, 2, 1, False))),
    "aten._softmax.default": C(lambda m, x: A._softmax(x, 1, False)),
    "aten._log_softmax.default": C(lambda m, x: A._log_softmax(x, 3, False)),
    "aten.linalg_vector_norm.default": C(lambda m, x: (A.linalg_vector_norm(x, 2, [1]),
                                                       A.linalg_vector_norm(x, 3, [2, 3], True),
                                                       A.linalg_vector_norm(x, float("inf"), [1]))),
    # views and copies
    "aten.view.default": C(lambda m, x: A.view(x, [-1, 3, 20])),
    "aten._unsafe_view.default": C(lambda m, x: A._unsafe_view(x, [-1, 20]), keep=(A._unsafe_view.default,)),
    "aten.permute.default": C(lambda m, x: A.permute(x, [0, 2, 3, 1]) * m.w, w=P(3)),
    "aten.expand.default": C(lambda m, x: A.expand(m.w, [x.shape[0], -1, 4, 5]) + x, w=P(3, 1, 1)),
    "aten.squeeze.dim": C(lambda m, x: A.squeeze.dim(A.mean.dim(x, [2], True), 2), keep=(A.squeeze.dim,)),
    "aten.squeeze.dims": C(lambda m, x: A.squeeze.dims(A.mean.dim(x, [1, 3], True), [1, 2, 3])),
    "aten.unsqueeze.default": C(lambda m, x: A.unsqueeze(x, -2) * m.w, w=P(3, 1, 2, 1)),
    "aten.slice.Tensor": C(lambda m, x: (A.slice.Tensor(x, 1, 1, 3), A.slice.Tensor(x, 3, 0, 9223372036854775807, 2),
                                         A.slice.Tensor(x, 2, -3, None))),
    "aten.select.int": C(lambda m, x: (A.select.int(x, 1, 2), A.select.int(x, -1, -2))),
    "aten.slice_scatter.default": C(lambda m, x: A.slice_scatter(x, m.w[:x.shape[0]], 3, 1, 5, 2), w=P(8, 3, 4, 2)),
    "aten.select_scatter.default": C(lambda m, x: A.select_scatter(x, m.w[:x.shape[0]], 1, 1), w=P(8, 4, 5),
                                     keep=(A.select_scatter.default,)),
    "aten.cat.default": C(lambda m, x: A.cat([x, A.mul.Tensor(x, 2)], 1)),
    "aten.split_with_sizes.default": C(lambda m, x: [a * i for i, a in enumerate(A.split_with_sizes(x, [2, 3], 3))]),
    "aten.clone.default": C(lambda m, x: A.clone(x) + 1),
    "aten.alias.default": C(lambda m, x: A.alias(x) * 2),
    "aten.lift_fresh_copy.default": C(lambda m, x: x + torch.tensor([1.0, -2.0, 0.5, 3.0, 4.0])),
    "aten._to_copy.default": C(lambda m, x: (A._to_copy(ints(x), dtype=torch.float32), A._to_copy(x, dtype=torch.int32))),
    "aten.copy.default": C(lambda m, x: A.copy(x, m.w), w=P(1, 4, 1)),
    "aten.as_strided.default": C(lambda m, x: A.as_strided(x, [2, 3, 3], [20, 5, 1], 2)),
    "aten.flip.default": C(lambda m, x: A.flip(x, [1, 3])),
    "aten.repeat.default": C(lambda m, x: A.repeat(x, [1, 2, 1, 1, 2])),
    "aten.diagonal.default": C(lambda m, x: (A.diagonal(x, 1, 2, 3), A.diagonal(x, -1, 0, 1))),
    "aten.index.Tensor": C(lambda m, x: (A.index.Tensor(x, [None, _idx(2, 0, 0)]),
                                         A.index.Tensor(x, [_idx(1, 0), None, _idx(3, 1)]))),
    "aten.index_put.default": C(lambda m, x: (A.index_put(x, [None, _idx(2, 0)], m.w),
                                              A.index_put(x, [_idx(1, 1)], m.v, True)), w=P(4, 5), v=P(3, 4, 5)),
    "aten.index_select.default": C(lambda m, x: A.index_select(x, 2, _idx(3, 1, 1))),
    "aten.gather.default": C(lambda m, x: A.gather(x, 1, _idx(2, 0, 1, 1).view(1, 2, 2, 1))),
    "aten.scatter.src": C(lambda m, x: A.scatter.src(x, 3, _idx(4, 0, 2).view(1, 1, 1, 3), m.w), w=P(2, 3, 4, 5)),
    "aten.scatter.value": C(lambda m, x: A.scatter.value(x, 1, _idx(2, 0).view(1, 2, 1, 1), 7.5)),
    "aten.scatter_add.default": C(lambda m, x: A.scatter_add(x, 3, _idx(4, 4, 2).view(1, 1, 1, 3), m.w),
                                  w=P(2, 3, 4, 5)),
    "aten.scatter_reduce.two": C(lambda m, x: tuple(
        A.scatter_reduce.two(x, 3, _idx(4, 4, 2).view(1, 1, 1, 3), m.w, how, include_self=inc)
        for how in ("sum", "prod", "mean", "amax", "amin") for inc in (True, False)), w=P(2, 3, 4, 3)),
    "aten.masked_scatter.default": C(lambda m, x: A.masked_scatter(x, A.gt.Scalar(m.w, 0), A.mul.Scalar(x, 10)),
                                     w=P(4, 5)),
    "aten.embedding.default": C(lambda m, x: A.embedding(m.w, ints(A.abs(x), 2).clamp(max=6)), w=P(7, 3)),
    # factories
    "aten.full.default": C(lambda m, x: A.add.Tensor(x, A.full([4, 5], 1.5))),
    "aten.full_like.default": C(lambda m, x: A.full_like(x, 2.5) * x),
    "aten.fill.Scalar": C(lambda m, x: A.fill.Scalar(x, 3.0) - x, keep=(A.fill.Scalar,)),
    "aten.scalar_tensor.default": C(lambda m, x: A.where.self(A.gt.Scalar(x, 0), x, A.scalar_tensor(-1.0))),
    "aten.arange.start_step": C(lambda m, x: (x * A.arange.start_step(0, 5, 1), A.arange.start_step(1.0, 2.0, 0.25))),
    "aten.empty.memory_format": C(lambda m, x: A.empty.memory_format([3, 1, 1]).fill_(2.0) * x),
    "aten.empty_strided.default": C(lambda m, x: A.empty_strided([5], [1]).fill_(2.0) * x),
    # linear algebra, convolution
    "aten.mm.default": C(lambda m, x: A.mm(A.view(x, [-1, 20]), m.w), w=P(20, 7)),
    "aten.bmm.default": C(lambda m, x: A.bmm(A.view(x, [-1, 12, 5]), m.w[:x.shape[0]]), w=P(8, 5, 3)),
    "aten.addmm.default": C(lambda m, x: A.addmm(m.b, A.view(x, [-1, 20]), m.w, beta=0.5, alpha=2.0),
                            w=P(20, 7), b=P(7)),
    "aten.convolution.default": C(lambda m, x: (
        A.convolution(x, m.w, m.b, [2, 1], [1, 2], [1, 2], False, [0, 0], 1),
        A.convolution(x, m.wg, None, [1, 1], [0, 1], [1, 1], False, [0, 0], 3),
        A.convolution(x, m.wt, m.b2, [2, 2], [1, 0], [1, 1], True, [1, 0], 1),
        A.convolution(x, m.wtg, None, [2, 1], [0, 1], [2, 1], True, [1, 0], 3),
        A.convolution(A.view(x, [-1, 3, 20]), m.w1, None, [2], [1], [1], False, [0], 1),
        A.convolution(A.view(x, [-1, 3, 1, 4, 5]), m.w3, None, [1, 1, 1], [0, 1, 1], [1, 1, 1], False, [0, 0, 0], 1)),
        w=P(4, 3, 3, 2), b=P(4), wg=P(6, 1, 2, 3), wt=P(3, 5, 3, 2), b2=P(5), wtg=P(3, 2, 2, 3),
        w1=P(4, 3, 3), w3=P(2, 3, 1, 3, 3)),
    "aten._cdist_forward.default": C(lambda m, x: (A._cdist_forward(A.view(x, [-1, 4, 5]), m.w[:3 * x.shape[0]], 2.0, None),
                                                   A._cdist_forward(A.view(x, [-1, 4, 5]), m.w[:3 * x.shape[0]], 1.0, None)),
                                     w=P(24, 3, 5)),
    "aten._pdist_forward.default": C(lambda m, x: A._pdist_forward(A.view(x, [-1, 20]), 2.0)),
    # pooling, padding, resampling
    "aten.avg_pool2d.default": C(lambda m, x: (A.avg_pool2d(x, [3, 2], [2, 2], [1, 1], True, True),
                                               A.avg_pool2d(x, [3, 3], [2, 1], [1, 1], True, False),
                                               A.avg_pool2d(x, [2, 2], [], [0, 0], False, True, 3)), shape=(2, 3, 7, 6)),
    "aten.avg_pool3d.default": C(lambda m, x: A.avg_pool3d(A.view(x, [-1, 1, 3, 7, 6]), [3, 1, 2], [1, 1, 2],
                                                           [1, 0, 1], True, False), shape=(2, 3, 7, 6)),
    "aten.max_pool2d_with_indices.default": C(lambda m, x: A.max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1],
                                                                                     [1, 1], True)[0],
                                              shape=(2, 3, 8, 7)),
    "aten.max_pool3d_with_indices.default": C(lambda m, x: A.max_pool3d_with_indices(
        A.view(x, [-1, 1, 3, 8, 7]), [2, 2, 2], [1, 2, 2], [1, 1, 0], [1, 1, 1], False)[0], shape=(2, 3, 8, 7)),
    "aten._adaptive_avg_pool2d.default": C(lambda m, x: (A._adaptive_avg_pool2d(x, [3, 4]),
                                                         A._adaptive_avg_pool2d(x, [2, 3])), shape=(2, 3, 7, 6)),
    "aten._adaptive_avg_pool3d.default": C(lambda m, x: A._adaptive_avg_pool3d(A.view(x, [-1, 1, 3, 7, 6]),
                                                                               [2, 3, 4]), shape=(2, 3, 7, 6)),
    "aten.adaptive_max_pool2d.default": C(lambda m, x: A.adaptive_max_pool2d(x, [3, 4])[0], shape=(2, 3, 7, 6)),
    "aten.constant_pad_nd.default": C(lambda m, x: A.constant_pad_nd(x, [1, 2, -1, 1, 0, 1], 0.5)),
    "aten.reflection_pad1d.default": C(lambda m, x: A.reflection_pad1d(A.view(x, [-1, 4, 5]), [2, 1]),
                                       keep=(A.reflection_pad1d.default,)),
    "aten.reflection_pad2d.default": C(lambda m, x: A.reflection_pad2d(x, [2, 1, 1, 3]),
                                       keep=(A.reflection_pad2d.default,)),
    "aten.reflection_pad3d.default": C(lambda m, x: A.reflection_pad3d(A.view(x, [-1, 1, 3, 4, 5]), [1, 2, 1, 0, 2, 1]),
                                       keep=(A.reflection_pad3d.default,)),
    "aten.replication_pad2d.default": C(lambda m, x: A.replication_pad2d(x, [2, 1, 1, 3]),
                                        keep=(A.replication_pad2d.default,)),
    "aten.replication_pad3d.default": C(lambda m, x: A.replication_pad3d(A.view(x, [-1, 1, 3, 4, 5]),
                                                                         [1, 2, 1, 0, 2, 1]),
                                        keep=(A.replication_pad3d.default,)),
    "aten.upsample_nearest2d.vec": C(lambda m, x: A.upsample_nearest2d.vec(x, None, [2.0, 1.5]),
                                     direct=(A.upsample_nearest2d.vec, (None, [2.0, 1.5]))),
    "aten.upsample_bilinear2d.vec": C(lambda m, x: A.upsample_bilinear2d.vec(x, None, False, [2.0, 1.5]),
                                      direct=(A.upsample_bilinear2d.vec, (None, False, [2.0, 1.5]))),
    "aten.upsample_nearest2d.default": C(lambda m, x: (A.upsample_nearest2d.default(x, [8, 10], 2.0, 2.0),
                                                       A.upsample_nearest2d.default(x, [7, 9])),
                                         keep=(A.upsample_nearest2d.default,)),
    "aten.upsample_bilinear2d.default": C(lambda m, x: (A.upsample_bilinear2d.default(x, [8, 10], False, 2.0, 2.0),
                                                        A.upsample_bilinear2d.default(x, [3, 7], True))),
    "aten.grid_sampler_2d.default": C(lambda m, x: tuple(A.grid_sampler_2d(x, A.tanh(m.g[:x.shape[0]]) * 1.2, i, p, a)
                                                         for i in (0, 1) for p in (0, 1) for a in (False, True)),
                                      g=P(8, 3, 4, 2)),
    # normalisation
    "aten.native_layer_norm.default": C(lambda m, x: A.native_layer_norm(x, [4, 5], m.w, m.b, 1e-5),
                                        w=P(4, 5), b=P(4, 5, seed=1)),
    "aten.native_group_norm.default": C(lambda m, x: A.native_group_norm(A.view(x, [-1, 6, 2, 5]), m.w, m.b, x.shape[0], 6,
                                                                         10, 3, 1e-5), w=P(6), b=P(6, seed=1)),
    "aten._native_batch_norm_legit_no_training.default": C(
        lambda m, x: A._native_batch_norm_legit_no_training(x, m.w, m.b, m.rm, m.rv, 0.1, 1e-5)[0],
        w=P(3), b=P(3, seed=1), rm=torch.tensor([0.1, -0.2, 0.3]), rv=torch.tensor([0.5, 1.5, 2.0])),
    "aten._native_batch_norm_legit.default": C(
        lambda m, x: A._native_batch_norm_legit(x, m.w, m.b, m.rm.clone(), m.rv.clone(), False, 0.1, 1e-5)[0],
        direct=(A._native_batch_norm_legit.default, lambda ph: (ph[4], *ph[:4], False, 0.1, 1e-5)),
        w=P(3), b=P(3, seed=1), rm=torch.tensor([0.1, -0.2, 0.3]), rv=torch.tensor([0.5, 1.5, 2.0])),
    "aten._native_batch_norm_legit_functional.default": C(
        lambda m, x: (A._native_batch_norm_legit_functional(x, m.w, m.b, m.rm, m.rv, True, 0.1, 1e-5),
                      A._native_batch_norm_legit_functional(x, m.w, m.b, m.rm, m.rv, False, 0.1, 1e-5)),
        w=P(3), b=P(3, seed=1), rm=torch.tensor([0.1, -0.2, 0.3]), rv=torch.tensor([0.5, 1.5, 2.0])),
    "aten._native_batch_norm_legit.no_stats": C(lambda m, x: A._native_batch_norm_legit.no_stats(
        x, m.w, m.b, True, 0.1, 1e-5), w=P(3), b=P(3, seed=1)),
    "aten.native_batch_norm.default": C(
        lambda m, x: A.native_batch_norm(x, m.w, m.b, m.rm.clone(), m.rv.clone(), False, 0.1, 1e-5)[0],
        w=P(3), b=P(3, seed=1), rm=torch.tensor([0.1, -0.2, 0.3]), rv=torch.tensor([0.5, 1.5, 2.0])),
    "aten.native_dropout.default": C(lambda m, x: A.native_dropout(x, 0.5, False)),
    "aten.col2im.default": C(lambda m, x: (A.col2im(A.view(x, [-1, 12, 15]), [5, 6], [2, 2], [2, 1], [1, 0], [1, 2]),
                                           A.col2im(A.view(x, [-1, 12, 15])[0], [5, 6], [2, 2], [2, 1], [1, 0], [1, 2])),
                             shape=(2, 12, 15, 1), keep=(A.col2im.default,)),
    # backward ops: each fed the gradient of y * y / 2 from the forward op's own output
    "aten.convolution_backward.default": C(lambda m, x: (
        A.convolution_backward(A.convolution(x, m.w, m.b, [2, 1], [1, 2], [1, 2], False, [0, 0], 1), x, m.w, [4],
                               [2, 1], [1, 2], [1, 2], False, [0, 0], 1, [True, True, True]),
        A.convolution_backward(A.convolution(x, m.wt, None, [2, 2], [1, 0], [1, 1], True, [1, 0], 3), x, m.wt, None,
                               [2, 2], [1, 0], [1, 1], True, [1, 0], 3, [True, True, False])),
        keep=(A.convolution_backward.default,), w=P(4, 3, 3, 2), b=P(4), wt=P(3, 2, 2, 3)),
    "aten.avg_pool2d_backward.default": C(lambda m, x: A.avg_pool2d_backward(
        A.avg_pool2d(x, [3, 2], [2, 2], [1, 1], True, False), x, [3, 2], [2, 2], [1, 1], True, False, None),
        shape=(2, 3, 7, 6), keep=(A.avg_pool2d_backward.default,)),
    "aten.max_pool2d_with_indices_backward.default": C(lambda m, x: A.max_pool2d_with_indices_backward(
        A.max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1], [1, 1], True)[0] ** 2, x, [3, 3], [2, 2], [1, 1], [1, 1],
        True, A.max_pool2d_with_indices(x, [3, 3], [2, 2], [1, 1], [1, 1], True)[1]), shape=(2, 3, 8, 7),
        keep=(A.max_pool2d_with_indices_backward.default,)),
    "aten._adaptive_avg_pool2d_backward.default": C(lambda m, x: A._adaptive_avg_pool2d_backward(
        A._adaptive_avg_pool2d(x, [3, 4]) ** 2, x), shape=(2, 3, 7, 6), keep=(A._adaptive_avg_pool2d_backward.default,)),
    "aten.native_layer_norm_backward.default": C(lambda m, x: A.native_layer_norm_backward(
        A.native_layer_norm(x, [4, 5], m.w, m.b, 1e-5)[0] ** 2, x, [4, 5], *A.native_layer_norm(x, [4, 5], m.w, m.b,
                                                                                                 1e-5)[1:],
        m.w, m.b, [True, True, True]), keep=(A.native_layer_norm_backward.default,), w=P(4, 5), b=P(4, 5, seed=1)),
    "aten.native_group_norm_backward.default": C(lambda m, x: A.native_group_norm_backward(
        A.native_group_norm(A.view(x, [-1, 6, 2, 5]), m.w, m.b, x.shape[0], 6, 10, 3, 1e-5)[0] ** 2,
        A.view(x, [-1, 6, 2, 5]), *A.native_group_norm(A.view(x, [-1, 6, 2, 5]), m.w, m.b, x.shape[0], 6, 10, 3,
                                                        1e-5)[1:],
        m.w, x.shape[0], 6, 10, 3, [True, True, True]), keep=(A.native_group_norm_backward.default,),
        w=P(6), b=P(6, seed=1)),
    "aten.embedding_dense_backward.default": C(lambda m, x: (
        A.embedding_dense_backward(A.unsqueeze(x, -1) * m.v, ints(A.abs(x), 2).clamp(max=6), 7, 2, True),
        A.embedding_dense_backward(A.unsqueeze(x, -1) * m.v, ints(A.abs(x), 2).clamp(max=6), 7, -1, False)),
        keep=(A.embedding_dense_backward.default,), v=P(3)),
}


def test_every_rule_has_a_case():
    assert set(CASES) == set(ATEN_RULES)


def widen_(module) -> None:
    """The ported module's float variables in float64, as the parity suite's float64 twin has them."""
    for _, var in nnx.to_flat_state(nnx.state(module)):
        v = var.get_value()
        if jnp.issubdtype(v.dtype, jnp.floating):
            var.set_value(jnp.asarray(np.asarray(v, np.float64)))


def _nhwc(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def _example(shape, positive):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    return x.abs() + 0.1 if positive else x


def _direct_lowering(op, args):
    """A stand-in for aten._lower: the graph `view(op(x, *args), [-1])` (`args` a function of the placeholders
    [*parameters, *buffers, x] when the op reads the module's tensors), values recorded as the real one does."""
    def lower(m, state, inputs, rebuild, training):
        g = fx.Graph()
        placeholders = [g.placeholder(f"arg{i}") for i in range(len(state) + len(inputs))]
        if callable(args):
            y = g.call_function(operator.getitem, (g.call_function(op, args(placeholders)), 0))
        else:
            y = g.call_function(op, (placeholders[-1], *args))
        g.output(g.call_function(A.view.default, (y, [-1])))
        gm = fx.GraphModule(nn.Module(), g)
        aten._Recorder(gm).run(*[v for _, v in state], *inputs)
        return gm
    return lower


# Every row has its test; `make test` runs every fourth (one port per row costs ~1.5 s, 184 rows
# would take ~4.5 minutes of CI's 10 on one core), `make test-extended` all of them.
ROWS = [pytest.param(op, marks=() if i % 4 == 0 else pytest.mark.extended) for i, op in enumerate(sorted(CASES))]


@pytest.mark.parametrize("op", ROWS)
def test_each_rule_matches_torch(op, monkeypatch):
    fn, shape, positive, tensors, keep, direct = CASES[op]
    if keep:
        table = aten.decompositions()
        monkeypatch.setattr(aten, "decompositions", lambda: {k: v for k, v in table.items() if k not in keep})
    if direct:
        monkeypatch.setattr(aten, "_lower", _direct_lowering(*direct))
    torch.manual_seed(0)
    tm = nn.Sequential(Probe(fn, **tensors))
    x = _example(shape, positive)
    res = port(tm, x)
    assert any(r.torch == op for r in res.report.rows), f"{op} is not in the lowering: the case tests another op"
    tm.eval(), res.module.eval()
    with torch.no_grad():
        ref32 = tm(x).numpy()
    out32 = np.asarray(res.module(jnp.asarray(_nhwc(x.numpy()))))
    assert out32.shape == ref32.shape
    scale = max(1.0, float(np.abs(ref32).max()))
    assert np.abs(out32.astype(np.float64) - ref32).max() <= TOL32 * scale, "float32"
    with jax.enable_x64(True):
        with torch.no_grad():
            ref64 = tm.double()(x.double()).numpy()
        widen_(res.module)
        out64 = np.asarray(res.module(jnp.asarray(_nhwc(x.double().numpy()))))
    assert out64.dtype == np.float64
    assert np.abs(out64 - ref64).max() <= TOL64 * scale, "float64"


# --- real torch.nn modules with no hand-written rule, in small CNNs --------------------------------

class Net(nn.Module):
    """conv → the module under test → conv → mean: the lowered module sits between NHWC layers."""

    def __init__(self, make, c_mid=4):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.mod = make()
        self.head = nn.Conv2d(c_mid, 5, 1)

    def forward(self, x):
        return self.head(self.mod(F.relu(self.bn(self.stem(x))))).mean((2, 3))


class PairNet(nn.Module):
    """A module with two tensor inputs (CosineSimilarity, PairwiseDistance), its result back into a conv."""

    def __init__(self, make):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        self.mod = make()
        self.head = nn.Conv2d(1, 2, 1)

    def forward(self, x):
        return self.head(self.mod(self.a(x), self.b(x)).unsqueeze(1))


MODULES = [
    pytest.param(lambda: Net(nn.SELU), id="SELU"),
    pytest.param(lambda: Net(lambda: nn.CELU(0.7)), id="CELU"),
    pytest.param(lambda: Net(lambda: nn.GLU(1), 2), id="GLU"),
    pytest.param(lambda: Net(lambda: nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=1.5)), id="LocalResponseNorm"),
    pytest.param(lambda: Net(lambda: nn.ChannelShuffle(2)), id="ChannelShuffle"),
    pytest.param(lambda: Net(nn.Softsign), id="Softsign"),
    pytest.param(lambda: Net(nn.LogSigmoid), id="LogSigmoid"),
    pytest.param(lambda: Net(lambda: nn.Softmin(1)), id="Softmin"),
    pytest.param(lambda: Net(nn.Tanhshrink), id="Tanhshrink"),
    pytest.param(lambda: Net(lambda: nn.Hardshrink(0.3)), id="Hardshrink"),
    pytest.param(lambda: Net(lambda: nn.Softshrink(0.3)), id="Softshrink"),
    pytest.param(lambda: Net(lambda: nn.Threshold(0.1, -1.0)), id="Threshold"),
    pytest.param(lambda: Net(lambda: nn.RMSNorm([8, 8])), id="RMSNorm"),
    pytest.param(lambda: Net(lambda: nn.LPPool2d(2, 2)), id="LPPool2d"),
    pytest.param(lambda: Net(nn.Softmax2d), id="Softmax2d"),
    pytest.param(lambda: Net(lambda: nn.Sequential(nn.Unflatten(1, (2, 2)), nn.Flatten(1, 2))), id="Unflatten"),
    pytest.param(lambda: Net(lambda: nn.Sequential(nn.Flatten(2), nn.InstanceNorm1d(4, affine=True),
                                                   nn.Unflatten(2, (8, 8)))), id="InstanceNorm1d-affine"),
    pytest.param(lambda: PairNet(lambda: nn.CosineSimilarity(1)), id="CosineSimilarity"),
]


@pytest.mark.parametrize("make", MODULES)
def test_real_modules_without_a_rule_port_through_core_aten(make):
    torch.manual_seed(0)
    tm = make()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    res = port(tm, x)
    lowered = [r for r in res.report.rows if r.flax.startswith("lowered through Core ATen")]
    assert lowered, "the module was not lowered"
    assert res.batch_size is None, "a lowering's view of the batch must not pin the port to batch 2"
    x3 = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))  # another batch size
    tm64, x64, fm = copy.deepcopy(tm).double(), x.double(), nnx.clone(res.module)  # before train steps move BN
    # float64, as the parity suite's twin runs it: exact to 1e-12 (RMSNorm's default eps is the float's own)
    with jax.enable_x64(True):
        widen_(fm)
        for train in (False, True):
            tm64.train(train)
            fm.train() if train else fm.eval()
            with torch.no_grad():
                ref = _nhwc(tm64(x64).numpy())
            out = np.asarray(fm(jnp.asarray(_nhwc(x64.numpy()))))
            assert out.dtype == np.float64
            assert np.abs(out - ref).max() <= TOL64 * max(1.0, np.abs(ref).max()), f"float64, train={train}"
    for train in (False, True):
        tm.train(train)
        res.module.train() if train else res.module.eval()
        for xi in (x, x3):
            with torch.no_grad():
                ref = tm(xi).numpy()
            out = np.asarray(res.module(jnp.asarray(_nhwc(xi.numpy()))))
            ref = _nhwc(ref)
            assert out.shape == ref.shape
            assert np.abs(out - ref).max() <= TOL32 * max(1.0, np.abs(ref).max()), f"train={train}"


class InplaceLowered(nn.Module):
    """`self.act(y)` with inplace=True overwrites y: torch's `y + z` is 2·selu(y), not y + selu(y)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.SELU(inplace=True)
        self.thr = nn.Threshold(0.2, -1.0, inplace=True)

    def forward(self, x):
        y = self.conv(x)
        z = self.act(y)
        return y + z + self.thr(z)


def test_an_in_place_module_without_a_rule_overwrites_its_input_as_in_torch():
    torch.manual_seed(0)
    tm = InplaceLowered()
    x = torch.randn(2, 3, 6, 6)
    res = port(tm, x)
    with torch.no_grad():
        ref = _nhwc(tm(x).numpy())
    out = np.asarray(res.module(jnp.asarray(_nhwc(x.numpy()))))
    assert np.abs(out - ref).max() <= TOL32 * max(1.0, np.abs(ref).max())
    assert any("in-place SELU" in n for n in res.report.notes)


def test_parameters_of_a_lowered_module_are_read_in_forward_under_their_torch_names():
    """nn.RMSNorm's weight is a parameter the lowering reads: it lands in the key map and model.py under
    `mod.weight`, and a state_dict round trip gives torch's tensors back."""
    torch.manual_seed(0)
    tm = Net(lambda: nn.RMSNorm([8, 8]))
    with torch.no_grad():
        tm.mod.weight.copy_(torch.rand(8, 8) + 0.5)
    res = port(tm, torch.randn(2, 3, 8, 8))
    keys = {m.torch_key: m.flax_path for m in res.key_map}
    assert keys["mod.weight"] == ("mod", "weight")
    assert "self.mod.weight.get_value()" in res.source
    import sys
    sd = sys.modules[type(res.module).__module__].state_dict(res.module)
    np.testing.assert_array_equal(sd["mod.weight"], tm.mod.weight.detach().numpy())
    assert res.report.flax_params == res.report.torch_params


# --- what stays a PortError ------------------------------------------------------------------------

class Counting(nn.Module):
    """A buffer written in forward: torch's running statistics style."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros(1))

    def forward(self, x):
        self.calls.add_(1)
        return x * 2


Counting.__module__ = "torch.nn.modules.parity_probe"


@pytest.mark.parametrize("make,message", [
    (lambda: nn.RReLU(), r"^0 \(RReLU\): unsupported module torch\.nn\.modules\.activation\.RReLU: no rule, and "
                         r"its Core ATen lowering has the random op aten\.rrelu"),
    (lambda: nn.AlphaDropout(0.2), r"^0 \(AlphaDropout\): .*random op aten\.bernoulli"),
    (lambda: nn.Sequential(nn.Flatten(2), nn.BatchNorm1d(3)),
     r"^0\.1 \(BatchNorm1d\): .*updates `0\.1\.\w+` in place in train mode"),
    (lambda: Counting(), r"^0 \(Counting\): .*updates `0\.calls` in place"),
    (lambda: Probe(lambda m, x: A.nonzero(x)), r"^0 \(Probe\): .*needs the ATen op aten\.nonzero\.default, "
                                               r"which has no rule"),
    (lambda: Probe(lambda m, x: A.max_pool2d_with_indices(x, [2, 2])[1]), r"the indices output is not ported"),
])
def test_what_cannot_be_ported_is_one_port_error(make, message):
    tm = nn.Sequential(make())
    with pytest.raises(PortError, match=message) as info:
        port(tm, torch.randn(2, 3, 4, 4))
    assert "\n" not in str(info.value)


# --- coverage ------------------------------------------------------------------------------------

def test_coverage_counts_the_table_against_torchs_core_opset():
    covered, total, missing = coverage()
    core = set(core_ops())
    assert total == len(core) > 150  # torch 2.13: 189 overloads tagged core
    assert covered == len(set(ATEN_RULES) & core)
    assert set(missing) == core - set(ATEN_RULES)
    assert covered / total > 0.85
    assert "Core ATen" in str(supported())
    assert all(type_ not in module_rules() for type_ in (nn.SELU, nn.GLU, nn.LocalResponseNorm))
