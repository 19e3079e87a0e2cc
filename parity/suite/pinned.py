"""Gradients with the kink decisions pinned: the verdict for deep nets where every batch has flips.

Parity trap: a pre-activation within float32 rounding of a kink (ReLU's 0) can land on the other side
than its exact value; the unit's derivative is then 1 instead of 0 and every gradient below it moves
by that unit's whole contribution, although the port is exact. On a deep net every batch has such
flips somewhere (RegNetY-400MF at batch 2: 29 in the Flax float32 forward), so no kink-free batch
exists to judge on. Here the torch references are recomputed with each kink op taking the *Flax
float32 forward's* decisions (which side of each kink every value is on), the way fixed dropout
masks are injected: exact (float64) and torch float32 then differentiate the same piecewise branch
the port did, and the comparison measures the port's arithmetic, not the flips. A max-pool is pinned
the same way: each window takes the element the Flax forward chose as its maximum. A separate check
proves the decisions themselves right: every value whose side differs from the exact forward's
lies within torch float32's own rounding of the kink at that op, and every window whose maximum
moved chose an element within that rounding of the exact maximum.
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx

from parity.suite.forward import set_mode
from parity.suite.loss import torch_loss
from parity.suite.masks import PATCHED, fixed_dropout
from parity.suite.results import Check
from parity.suite.twins import KeyMappingLike, ModulePair, prepare, torch_input

WITHIN = 4.0
"""A flip is rounding when the exact input lies within WITHIN x torch float32's own largest input
error at that op from the kink (torch's own rounding at that depth is the yardstick, as elsewhere)."""


def _branches(site, x: torch.Tensor) -> list[torch.Tensor]:
    """The function's pieces between its kink points, left to right."""
    zero = torch.zeros_like(x)
    if site.fn == "relu":
        return [zero, x]
    if site.fn == "relu6":
        return [zero, x, zero + 6.0]
    if site.fn == "leaky_relu":
        return [x * site.bounds[0], x]
    if site.fn == "hardswish":
        return [zero, x * (x + 3.0) / 6.0, x]
    if site.fn == "hardsigmoid":
        return [zero, x / 6.0 + 0.5, zero + 1.0]
    lo, hi = site.bounds  # clamp, hardtanh
    pieces = ([zero + lo] if lo is not None else []) + [x] + ([zero + hi] if hi is not None else [])
    return pieces


def regions(site, values: np.ndarray) -> np.ndarray:
    """Which piece each value is on: the number of kink points strictly below it (at a point: the left piece)."""
    return sum((values > p).astype(np.int64) for p in sorted(site.points))


def pool_indices(values: np.ndarray, pool: tuple) -> torch.Tensor:
    """Each window's maximum in `values` (NHWC) as torch's flat H*W index into the NCHW input (ties:
    the first, as torch chooses)."""
    kernel, stride, padding, dilation, ceil_mode = pool
    v = torch.from_numpy(values.astype(np.float64).transpose(0, 3, 1, 2).copy())
    return F.max_pool2d(v, kernel_size=kernel, stride=stride, padding=padding, dilation=dilation,
                        ceil_mode=ceil_mode, return_indices=True)[1]


def argmax_gaps(exact: np.ndarray, other: np.ndarray, pool: tuple) -> np.ndarray:
    """For each window whose maximum `other` puts on an element the exact input holds strictly smaller:
    how much smaller (exact window maximum minus the exact value `other` chose)."""
    e = torch.from_numpy(exact.astype(np.float64).transpose(0, 3, 1, 2).copy())
    i_e, i_o = pool_indices(exact, pool), pool_indices(other, pool)
    top = e.flatten(2).gather(2, i_e.flatten(2))
    at_other = e.flatten(2).gather(2, i_o.flatten(2))
    gap = (top - at_other).flatten()
    return gap[gap > 0].numpy()


def pinnable(probe) -> bool:
    """Every kink site has branches or a window choice to pin."""
    return all(s.pool is not None or s.fn for s in probe.sites)


def torch_gradients(probe, torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray,
                    labels, pattern: dict[str, np.ndarray], *, dtype: str, label_smoothing: float = 0.0,
                    dropout_pairs: Sequence[ModulePair] = ()) -> tuple[float, dict[str, np.ndarray]]:
    """(loss, d loss / d param) of the torch model in `dtype`, train mode, dropout off, each kink op
    on the piece `pattern` (the Flax kink inputs, in the probe's layout) puts each value on."""
    sites = {s.op: s for s in probe.sites}
    tm, fm = prepare(torch_model, flax_model, key_map, dtype, torch_only=True)
    set_mode(tm, fm, "train")
    pieces = {}
    for name, v in pattern.items():
        site = sites[name]
        if site.pool is not None:
            pieces[name] = pool_indices(v, site.pool)
            continue
        r = regions(site, v)
        pieces[name] = torch.from_numpy(r.transpose(0, 3, 1, 2).copy() if site.nhwc and r.ndim == 4 else r)

    class Pinned(fx.Interpreter):
        def call_function(self, target, args, kwargs):
            return super().call_function(PATCHED.get(target, target), args, kwargs)

        def run_node(self, n):
            if n.name not in pieces:
                return super().run_node(n)
            x = self.env[n.args[0]] if isinstance(n.args[0], fx.Node) else n.args[0]
            if sites[n.name].pool is not None:  # each window's maximum where the Flax forward found it
                idx = pieces[n.name]
                return x.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
            branches, which = _branches(sites[n.name], x), pieces[n.name]
            out = branches[-1]
            for i in range(len(branches) - 2, -1, -1):
                out = torch.where(which <= i, branches[i], out)
            return out

    with fixed_dropout(tm, fm, dropout_pairs, identity=True):
        tm.zero_grad(set_to_none=True)
        gm = fx.GraphModule(tm, copy.deepcopy(probe.graph))
        loss = torch_loss(Pinned(gm).run(torch_input(x_nchw, dtype)), labels, label_smoothing=label_smoothing)
        loss.backward()
        grads = {k: p.grad.detach().numpy().copy() for k, p in tm.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def decisions_check(probe, exact: dict[str, np.ndarray], flax32: dict[str, np.ndarray],
                    torch32: dict[str, np.ndarray]) -> Check:
    """Every Flax float32 kink decision that differs from the exact one is within torch float32's own
    rounding of the kink at that op (`WITHIN` x its largest input error there)."""
    sites = {s.op: s for s in probe.sites}
    worst, where, flips = 0.0, "", 0
    for name, e in exact.items():
        f, t = flax32.get(name), torch32.get(name)
        if f is None or t is None or f.shape != e.shape:
            continue
        site = sites[name]
        if site.pool is not None:
            dist = argmax_gaps(e, f, site.pool)  # a moved maximum: how far below the exact one it is
        else:
            moved = regions(site, f) != regions(site, e)
            dist = (np.min(np.stack([np.abs(e[moved] - p) for p in site.points]), axis=0) if moved.any()
                    else np.zeros(0))
        if not dist.size:
            continue
        flips += int(dist.size)
        own = float(np.max(np.abs(t.astype(np.float64) - e)))
        ratio = float(np.max(dist)) / max(own, np.finfo(np.float32).tiny)
        if ratio > worst:
            what = "window maximum" if site.pool is not None else "kink"
            worst, where = ratio, f"{name}: exact input {float(np.max(dist)):.2e} from the {what}, torch float32's " \
                                  f"own error there {own:.2e}"
    name = f"kink decisions of the Flax forward, {flips} flip(s) against exact [float32]"
    return Check("gradient", name, worst, WITHIN, "" if worst <= WITHIN else where,
                 {"flips": flips, "rule": f"each flipped value within {WITHIN:g}x torch float32's own input error "
                  "at that op of the kink", "worst": where})
