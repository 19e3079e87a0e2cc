"""The scale of the terms each parameter gradient sums, for judging it by what its terms allow.

A weight gradient is a sum over positions (and the batch) of products ∂L/∂y · x. When the sum
nearly cancels — a stem BatchNorm's bias at batch 2, an SE block's 1x1 conv that sees two pooled
vectors — its value is small next to its terms, and a relative error max|Δ| / max|g| inflates
every implementation's rounding by that cancellation: the float32 error of two correct twins then
differs by 10-60x from one draw of rounding to the next (measured on the zoo), and the float64
one is 1e-12 "off" without any mistake. Measured against the scale of its terms instead, per entry,
an error is what the terms' precision allows, the same for every correct implementation, and
still large for a wrong one.

The terms' inputs (the layer's input x and output gradient g) are rounded to within a fraction of
their *largest* entries, so the scale of an entry is Σ (max|g|·|x| + |g|·max|x|) over its products
— `_terms`. Computed in torch float64, train mode, from each Conv2d/Linear/BatchNorm2d's input and
output gradient (the output gradient read through a zero "nudge" added to the output, which
in-place activations after the module cannot disturb). Other parameters have no entry; their
error stays relative to the gradient's own size.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from parity.suite.loss import torch_loss
from parity.suite.forward import set_mode
from parity.suite.masks import fixed_dropout
from parity.suite.twins import KeyMappingLike, ModulePair, prepare, torch_input

_MODULES = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)


def _conv_padding(m: nn.Conv2d) -> tuple[int, int] | None:
    if m.padding == "valid":
        return 0, 0
    if m.padding == "same":
        pads = [d * (k - 1) for k, d in zip(m.kernel_size, m.dilation)]
        return None if any(p % 2 for p in pads) else (pads[0] // 2, pads[1] // 2)
    return tuple(m.padding)


def _sums(m: nn.Module, ax: torch.Tensor, ag: torch.Tensor) -> dict[str, torch.Tensor]:
    """{parameter name: Σ ag·ax over what each entry sums} for `m`'s weight and bias (BatchNorm: `ax` is |x̂|)."""
    if isinstance(m, nn.Conv2d):
        pad = _conv_padding(m)
        out = {} if m.bias is None else {"bias": ag.sum((0, 2, 3))}
        if pad is not None:
            out["weight"] = torch.nn.grad.conv2d_weight(ax, m.weight.shape, ag, m.stride, pad, m.dilation, m.groups)
        return out
    if isinstance(m, nn.Linear):
        g2, x2 = ag.reshape(-1, ag.shape[-1]), ax.reshape(-1, ax.shape[-1])
        out = {"weight": g2.T @ x2}
        return out if m.bias is None else dict(out, bias=g2.sum(0))
    if not m.affine:
        return {}
    return {"weight": (ag * ax).sum((0, 2, 3)), "bias": ag.sum((0, 2, 3))}


def _terms(m: nn.Module, x: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    """{parameter name: the scale of its gradient's rounding} for one call of `m` (input `x`, output gradient `g`).

    The inputs of a weight gradient are themselves rounded — to within some fraction of their
    largest entry, not of each entry — so each entry's scale is Σ (max|g|·|x| + |g|·max|x|) over the
    products it sums: what an error of the inputs' own size could move it by."""
    if isinstance(m, nn.BatchNorm2d):
        mean = x.mean((0, 2, 3), keepdim=True)
        x = (x - mean) / torch.sqrt(x.var((0, 2, 3), unbiased=False, keepdim=True) + m.eps)
    ax, ag = x.abs(), g.abs()
    a = _sums(m, ax, torch.full_like(ag, float(ag.max())))
    b = _sums(m, torch.full_like(ax, float(ax.max())), ag)
    return {k: a[k] + b[k] for k in a}


def term_magnitudes(torch_model: torch.nn.Module, flax_model, key_map: Sequence[KeyMappingLike],
                    x_nchw: np.ndarray, labels: np.ndarray, *, label_smoothing: float = 0.0,
                    dropout_pairs: Sequence[ModulePair] = ()) -> dict[str, np.ndarray]:
    """{torch parameter key: its terms' scale per entry} for the parameters of Conv2d, Linear and BatchNorm2d layers."""
    tm, fm = prepare(torch_model, flax_model, key_map, "float64", torch_only=True)
    set_mode(tm, fm, "train")
    calls: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []

    def hook(name):
        def f(mod, inputs, out):
            nudge = torch.zeros_like(out, requires_grad=True)
            calls.append((name, mod, inputs[0].detach(), nudge))
            return out + nudge
        return f

    handles = [m.register_forward_hook(hook(n)) for n, m in tm.named_modules() if isinstance(m, _MODULES)]
    try:
        with fixed_dropout(tm, fm, dropout_pairs, identity=True):
            loss = torch_loss(tm(torch_input(x_nchw, "float64")), labels,
                                   label_smoothing=label_smoothing)
            loss.backward()
    finally:
        for h in handles:
            h.remove()
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, mod, x, nudge in calls:
            if nudge.grad is None:
                continue
            for p, t in _terms(mod, x, nudge.grad).items():
                key = f"{name}.{p}" if name else p
                out[key] = out[key] + t if key in out else t  # a module called twice sums both calls' terms
    return {k: v.numpy() for k, v in out.items()}


def term_relative_error(ours: np.ndarray, exact: np.ndarray, terms: np.ndarray) -> float:
    """max |ours - exact| / scale, entry by entry (entries of no scale are measured against the largest)."""
    a, b, t = (np.asarray(v, np.float64) for v in (ours, exact, terms))
    if a.shape != b.shape or t.shape != b.shape:
        return float("inf")
    scale = np.maximum(t, 1e-12 * float(np.max(t, initial=0.0)) + np.finfo(np.float64).tiny)
    err = float(np.max(np.abs(a - b) / scale, initial=0.0))
    return err if np.isfinite(err) else float("inf")
