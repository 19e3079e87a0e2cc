"""Family "gradient": the loss and its gradient w.r.t. every parameter, in train mode (batch-stat
BN, as training computes them), from the same weights and batch."""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np
import torch

from parity.suite import compiled, tolerances, verdict
from parity.suite.forward import set_mode
from parity.suite.loss import flax_labels, flax_loss, torch_loss
from parity.suite.masks import fixed_dropout
from parity.suite.results import Check, rel_err
from parity.suite.terms import term_magnitudes, term_relative_error
from parity.suite.twins import KeyMappingLike, ModulePair, flax_input, precision, prepare, state_tensors, torch_input

FAMILY = "gradient"


def _loss(m, x, y, label_smoothing: float):
    return flax_loss(m(x), y, label_smoothing)


_value_and_grad = compiled.value_and_grad(_loss)
"""(loss, d loss / d params): one function for every check, so equal graphs share a compile."""


def _loss_and_kink_inputs(m, x, y, label_smoothing: float, names: tuple[str, ...], read_locals):
    """The loss and, from the same forward, the emitted forward's locals `names` (a port's kink inputs)."""
    out, values = read_locals(m, x, names)
    return flax_loss(out, y, label_smoothing), values


_value_and_grad_kinks = compiled.value_and_grad(_loss_and_kink_inputs, has_aux=True)


def gradients(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray, labels: np.ndarray, *,
              label_smoothing: float = 0.0, dropout_pairs: Sequence[ModulePair] = (), dtype: str = "float32",
              torch_only: bool = False) -> tuple[tuple[float, float], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """((torch loss, Flax loss), torch grads, Flax grads in torch naming/layout), dropout off
    (`torch_only`: the Flax loss is nan and its grads empty)."""
    with precision(dtype):
        tm, fm = prepare(torch_model, flax_model, key_map, dtype, torch_only=torch_only)
        set_mode(tm, fm, "train")
        with fixed_dropout(tm, fm, dropout_pairs, identity=True):
            tm.zero_grad(set_to_none=True)
            loss_t = torch_loss(tm(torch_input(x_nchw, dtype)), labels,
                                     label_smoothing=label_smoothing)
            loss_t.backward()
            t_grads = {k: p.grad.detach().numpy().copy() for k, p in tm.named_parameters() if p.grad is not None}
            if torch_only:
                return (float(loss_t.detach()), float("nan")), t_grads, {}

            loss_f, grads = _value_and_grad(fm, flax_input(x_nchw, dtype), flax_labels(labels),
                                            static=(float(label_smoothing),))
            f_grads = state_tensors(grads, key_map)
    return (float(loss_t.detach()), float(loss_f)), t_grads, f_grads


def torch_conditioning(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray,
                       labels: np.ndarray, **kw) -> float:
    """torch float32's own error on this batch (worst tensor, against its float64 gradient): how
    ill-conditioned the batch is for any float32 implementation."""
    _, exact, _ = gradients(torch_model, flax_model, key_map, x_nchw, labels, dtype="float64", torch_only=True, **kw)
    _, own, _ = gradients(torch_model, flax_model, key_map, x_nchw, labels, dtype="float32", torch_only=True, **kw)
    terms = term_magnitudes(torch_model, flax_model, key_map, x_nchw, labels, **kw)
    return max(gradient_errors(exact, own, terms).values(), default=0.0)


def gradient_errors(t_grads: dict[str, np.ndarray], f_grads: dict[str, np.ndarray],
                    terms: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Per tensor: with `terms` (`terms.term_magnitudes`), max over entries of |Δ| / Σ|terms| — the
    error relative to what the gradient sums, blind to cancellation; otherwise max|Δ| / max|g_torch|,
    and a tensor that is analytically zero (below `tolerances.ZERO_GRADIENT` of the model's largest
    gradient) scaled by that largest gradient instead of by its own rounding noise."""
    top = max((float(np.max(np.abs(g), initial=0.0)) for g in t_grads.values()), default=0.0)
    out = {}
    for k, g in t_grads.items():
        f = f_grads.get(k)
        if terms is not None and k in terms and f is not None:
            out[k] = term_relative_error(f, g, terms[k])
            continue
        scale = float(np.max(np.abs(g), initial=0.0))
        if f is None or f.shape != g.shape or scale > tolerances.ZERO_GRADIENT * top or top == 0:
            out[k] = rel_err(f, g) if f is not None else np.inf  # inf for a missing or mis-shaped tensor
        else:
            out[k] = rel_err(f, g) * scale / top if scale else float(np.max(np.abs(f - g))) / top
    return out


def gradient_checks(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray,
                    labels: np.ndarray, *, label_smoothing: float = 0.0, dropout_pairs: Sequence[ModulePair] = (),
                    layer_pairs: Sequence[ModulePair] | None = None, dtypes: Sequence[str] = ("float32",),
                    batch_note: str = "", locate_failures: bool = True) -> list[Check]:
    """The loss and every parameter's gradient of the Flax twin in each of `dtypes`, against the
    torch twin's exact (float64) values, torch float32's own error the yardstick (`verdict`).

    Parity trap: on a trained model a conv's weight gradient is a sum of B·H·W terms that nearly
    cancel, so torch's own float32 gradient is ~1e-5 off its exact value (measured: batch 32, the 24->48
    conv at 32x32) and a float32-vs-float32 comparison charges the port with the reference's rounding.
    The port's error is its distance to the reference's exact gradient; torch's own float32 error is
    what it may be compared with. Pass a batch whose float32 forwards have no ReLU kink flips against
    the exact one (`kinks.smooth_batch`); `batch_note` says which. When a gradient is off, the input
    gradient of every layer, walking back from the loss, names the first layer whose backward diverges.
    """
    kw = dict(label_smoothing=label_smoothing, dropout_pairs=dropout_pairs)
    (ref_loss, loss64), ref, flax64 = gradients(torch_model, flax_model, key_map, x_nchw, labels, dtype="float64",
                                                **kw)
    (loss_t, loss_f), t_grads, f_grads = gradients(torch_model, flax_model, key_map, x_nchw, labels, dtype="float32",
                                                   **kw)
    terms = term_magnitudes(torch_model, flax_model, key_map, x_nchw, labels, **kw)
    own = gradient_errors(ref, t_grads, terms)
    own_loss = abs(loss_t - ref_loss) / abs(ref_loss)
    flax32 = gradient_errors(ref, f_grads, terms)
    flax32_loss = abs(loss_f - ref_loss) / abs(ref_loss)
    checks = []
    for dtype in dtypes:
        loss, grads = (loss64, flax64) if dtype == "float64" else (loss_f, f_grads)
        checks += _checks(dtype, key_map, label_smoothing, loss, grads, ref_loss, ref, own, own_loss, batch_note,
                          terms, jax_vs_torch_f32=gradient_errors(t_grads, grads, terms) if dtype == "float32" else None,
                          flax32=(flax32, flax32_loss) if dtype == "float64" else None)
    if locate_failures:
        checks = with_location(checks, torch_model, flax_model, key_map, x_nchw, labels, layer_pairs=layer_pairs, **kw)
    return checks


def with_location(checks: list[Check], torch_model, flax_model, key_map: Sequence[KeyMappingLike],
                  x_nchw: np.ndarray, labels: np.ndarray, **kw) -> list[Check]:
    """`checks` with the backward locator's finding added to each failing one (`backward.locate`)."""
    if all(c.passed for c in checks):
        return checks
    from parity.suite.backward import locate

    found = locate(torch_model, flax_model, key_map, x_nchw, labels,
                   dtypes=[c.name.rsplit("[", 1)[1].rstrip("]") for c in checks if not c.passed][:1], **kw)
    return [c if c.passed else Check(c.family, c.name, c.error, c.tol, f"{c.where}; {found}",
                                     dict(c.details, backward=found)) for c in checks]


def _checks(dtype: str, key_map: Sequence[KeyMappingLike], label_smoothing: float, loss: float,
            grads: dict[str, np.ndarray], ref_loss: float, ref: dict[str, np.ndarray], own: dict[str, float],
            own_loss: float, batch_note: str, terms: dict[str, np.ndarray],
            jax_vs_torch_f32: dict[str, float] | None = None,
            flax32: tuple[dict[str, float], float] | None = None) -> list[Check]:
    """The loss check and the every-tensor check of one dtype against the exact reference
    (`flax32`: the Flax float32 errors, for the float64 yardstick)."""
    floor = tolerances.gradient(dtype)
    errors = gradient_errors(ref, grads, terms)
    plain = gradient_errors(ref, grads)
    f32, f32_loss = flax32 if flax32 is not None else ({}, 0.0)
    rows = []
    for k in (m.torch_key for m in key_map if m.torch_key in ref):  # layer order: first bad = nearest the input
        j = verdict.judged(errors[k], own[k], dtype=dtype, floor=floor, flax_f32_error=f32.get(k, 0.0))
        row = {"tensor": k, **j.to_dict(), "passed": j.passed, "ratio": j.ratio, "metric": "terms" if k in terms
               else "max", "relative_to_max": plain[k], "max_abs_grad": float(np.max(np.abs(ref[k]), initial=0.0))}
        if jax_vs_torch_f32 is not None:
            row["jax_vs_torch_f32"] = jax_vs_torch_f32[k]
        rows.append(row)
    worst = max(rows, key=lambda r: r["ratio"])
    first_bad = next((r for r in rows if not r["passed"]), None)
    where = f"first tensor off: {first_bad['tensor']}" if first_bad else f"worst: {worst['tensor']}"
    where += f"; {batch_note}" if batch_note else ""
    lj = verdict.judged(abs(loss - ref_loss) / abs(ref_loss), own_loss, dtype=dtype, floor=floor,
                        flax_f32_error=f32_loss)
    loss_details = {"torch": ref_loss, "jax": loss, "reference": "torch float64", **lj.to_dict()}
    rule = verdict.yardstick_note(dtype)
    return [
        Check(FAMILY, f"loss (label smoothing {label_smoothing:g}) [{dtype}]", lj.error, lj.allowed, "",
              dict(loss_details, allowed_rule=rule)),
        Check(FAMILY, f"d loss / d param, {len(rows)} tensors [{dtype}]", worst["error"], worst["allowed"], where,
              {"reference": "torch float64", "first_off": first_bad["tensor"] if first_bad else None,
               "torch_error": worst["torch_error"], "allowed_rule": rule, "tensors": rows,
               "error_metric": "per entry, |Δ| over the sum of the magnitudes of the terms it adds up "
                               "(parity.suite.terms); relative to the tensor's largest entry where no terms are known"}),
    ]


def pinned_gradient_checks(probe, torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray,
                           labels: np.ndarray, *, label_smoothing: float = 0.0,
                           dropout_pairs: Sequence[ModulePair] = (), dtypes: Sequence[str] = ("float32",),
                           batch_note: str = "") -> list[Check]:
    """`gradient_checks` for a batch on which the Flax float32 forward has kink flips: the float32
    gradient is judged against the exact gradient *with the Flax forward's kink decisions pinned*
    (and torch float32's own error measured the same way), plus a check that each of those decisions
    that differs from the exact one is rounding (`parity.suite.pinned`). float64 is judged as usual."""
    from parity.suite import pinned

    kw = dict(label_smoothing=label_smoothing, dropout_pairs=dropout_pairs)
    (ref_loss, loss64), ref, flax64 = gradients(torch_model, flax_model, key_map, x_nchw, labels, dtype="float64",
                                                **kw)
    tm, fm = prepare(torch_model, flax_model, key_map)
    set_mode(tm, fm, "train")
    with fixed_dropout(tm, fm, dropout_pairs, identity=True):
        # The gradient and the kink decisions pinned in torch come from one compiled computation: XLA
        # fuses a forward-only run differently, and its decisions near a kink can differ.
        (loss_f, values), grads = _value_and_grad_kinks(fm, flax_input(x_nchw, "float32"), flax_labels(labels),
                                                        static=(float(label_smoothing), probe.value_names, probe.read_locals))
        loss_f, f_grads = float(loss_f), state_tensors(grads, key_map)
        flax32 = probe.flax_inputs({k: np.asarray(v) for k, v in values.items()})
        exact_in = probe.torch_inputs(tm.double(), x_nchw, "float64")
        tm.float()
        torch32_in = probe.torch_inputs(tm, x_nchw, "float32")
    pin_loss64, pin_ref = pinned.torch_gradients(probe, torch_model, flax_model, key_map, x_nchw, labels, flax32,
                                                 dtype="float64", **kw)
    pin_loss32, pin_t = pinned.torch_gradients(probe, torch_model, flax_model, key_map, x_nchw, labels, flax32,
                                               dtype="float32", **kw)
    terms = term_magnitudes(torch_model, flax_model, key_map, x_nchw, labels, **kw)
    own = gradient_errors(pin_ref, pin_t, terms)
    own_loss = abs(pin_loss32 - pin_loss64) / abs(pin_loss64)
    flax32_err = gradient_errors(pin_ref, f_grads, terms)
    flax32_loss = abs(loss_f - pin_loss64) / abs(pin_loss64)
    note = (f"{batch_note}; kink decisions pinned to the Flax float32 forward's in both torch references "
            "(exact and float32): every candidate batch flips somewhere").lstrip("; ")
    checks = []
    for dtype in dtypes:
        if dtype == "float64":
            checks += _checks("float64", key_map, label_smoothing, loss64, flax64, ref_loss, ref, own, own_loss,
                              batch_note, terms, flax32=(flax32_err, flax32_loss))
        else:
            checks += _checks("float32", key_map, label_smoothing, loss_f, f_grads, pin_loss64, pin_ref, own,
                              own_loss, note, terms, jax_vs_torch_f32=gradient_errors(pin_t, f_grads, terms))
    checks.append(pinned.decisions_check(probe, exact_in, flax32, torch32_in))
    return checks
