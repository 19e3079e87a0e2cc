"""Family "bf16": both twins' bf16 training step (convs and matmuls in bfloat16; parameters, BatchNorm
and the loss in float32) against the exact (float64) one, from the same weights and batch.

The torch twin runs under `torch.autocast(bfloat16)` (`torch_ref.precision`), the Flax twin on bf16
input with float32 parameters cast per conv (`flax_cnn.training.step`'s `compute_dtype`). Each twin's train-mode
logits and loss are judged against torch's float64 values in units of bf16's roundoff
(`tolerances.BF16_FORWARD`: judging torch too checks the reference's own bf16 path). A bf16 gradient is
far less accurate than its logits (BatchNorm's backward cancels), so the Flax twin's gradient is judged
by how much farther from exact it is than torch's bf16 gradient, relative to torch's
(`tolerances.bf16_gradient_excess`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from flax import nnx

from parity.suite import tolerances
from parity.suite.forward import set_mode
from parity.suite.gradient import gradient_errors
from parity.suite.loss import smoothed_cross_entropy
from parity.suite.masks import fixed_dropout
from parity.suite.results import Check, rel_err
from parity.suite.twins import KeyMappingLike, ModulePair, flax_input, precision, prepare, state_tensors, torch_input
from torch_ref.precision import autocast

FAMILY = "bf16"


@dataclass(frozen=True)
class Outcome:
    """One train-mode forward and backward: logits, loss and gradients (torch naming and layout)."""

    logits: np.ndarray
    loss: float
    grads: dict[str, np.ndarray]


def torch_outcome(torch_model, flax_model, key_map, x_nchw, labels, *, label_smoothing: float,
                  dropout_pairs: Sequence[ModulePair], compute: str) -> Outcome:
    """The torch twin in "float64" (exact) or "bf16" (autocast over float32 weights)."""
    dtype = "float64" if compute == "float64" else "float32"
    with precision(dtype):
        tm, fm = prepare(torch_model, flax_model, key_map, dtype)
    set_mode(tm, fm, "train")
    with fixed_dropout(tm, fm, dropout_pairs, identity=True):
        tm.zero_grad(set_to_none=True)
        with autocast("bf16" if compute == "bf16" else "fp32", "cpu"):  # the torch trainer's own context
            logits = tm(torch_input(x_nchw, dtype))
            loss = F.cross_entropy(logits.to(getattr(torch, dtype)), torch.from_numpy(labels.astype(np.int64)),
                                   label_smoothing=label_smoothing)
        loss.backward()
    grads = {k: p.grad.detach().double().numpy() for k, p in tm.named_parameters() if p.grad is not None}
    return Outcome(logits.detach().double().numpy(), float(loss.detach()), grads)


def flax_bf16_outcome(torch_model, flax_model, key_map, x_nchw, labels, *, label_smoothing: float,
                      dropout_pairs: Sequence[ModulePair]) -> Outcome:
    """The Flax twin as the trainer's bf16 step runs it: bf16 input, float32 parameters and loss."""
    tm, fm = prepare(torch_model, flax_model, key_map, "float32")
    set_mode(tm, fm, "train")
    with fixed_dropout(tm, fm, dropout_pairs, identity=True):
        def loss_fn(m, x, y):
            logits = m(x.astype(jnp.bfloat16)).astype(jnp.float32)
            return smoothed_cross_entropy(logits, y, label_smoothing), logits

        (loss, logits), grads = nnx.jit(nnx.value_and_grad(loss_fn, has_aux=True))(
            fm, flax_input(x_nchw, "float32"), jnp.asarray(labels, jnp.int32))
    leaves = jax.tree.leaves(nnx.state(grads, nnx.Param))
    if any(g.dtype != jnp.float32 for g in leaves):
        raise TypeError(f"bf16 step: parameter gradients must stay float32, got {sorted({str(g.dtype) for g in leaves})}")
    return Outcome(np.asarray(logits, np.float64), float(loss),
                   {k: np.asarray(v, np.float64) for k, v in state_tensors(grads, key_map).items()})


def normwise_error(grads: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> float:
    """|g - ref| / |ref| over all parameters as one vector: the per-tensor maxima of a bf16 gradient are
    dominated by the few tensors whose sums cancel most, the whole vector's norm by the gradient itself."""
    keys = list(ref)
    if any(k not in grads or grads[k].shape != ref[k].shape for k in keys):
        return float("inf")
    d = np.sqrt(sum(float(np.sum((grads[k] - ref[k]) ** 2)) for k in keys))
    n = np.sqrt(sum(float(np.sum(ref[k] ** 2)) for k in keys))
    return float(d / n if n > 0 else d)


def bf16_checks(torch_model, flax_model, key_map: Sequence[KeyMappingLike], x_nchw: np.ndarray, labels: np.ndarray,
                *, label_smoothing: float = 0.0, dropout_pairs: Sequence[ModulePair] = ()) -> list[Check]:
    """Each twin's bf16 logits and loss against the exact ones (`tolerances.BF16_FORWARD`), and the Flax
    twin's bf16 gradient error beyond torch's own (`tolerances.bf16_gradient_excess`)."""
    kw = dict(label_smoothing=label_smoothing, dropout_pairs=dropout_pairs)
    exact = torch_outcome(torch_model, flax_model, key_map, x_nchw, labels, compute="float64", **kw)
    runs = {"jax": flax_bf16_outcome(torch_model, flax_model, key_map, x_nchw, labels, **kw),
            "torch": torch_outcome(torch_model, flax_model, key_map, x_nchw, labels, compute="bf16", **kw)}
    u, checks = tolerances.BF16_U, []
    for who, run in runs.items():
        other = runs["torch" if who == "jax" else "jax"]
        twin = "Flax twin" if who == "jax" else "torch twin (reference)"
        err = rel_err(run.logits, exact.logits)
        checks.append(Check(FAMILY, f"{twin}: train-mode logits [bf16 vs exact]", err, tolerances.BF16_FORWARD,
                            f"{err / u:.1f}u; vs the other twin's bf16 {rel_err(run.logits, other.logits) / u:.1f}u",
                            {"reference": "torch float64", "unit_roundoff": u}))
        err = abs(run.loss - exact.loss) / abs(exact.loss)
        checks.append(Check(FAMILY, f"{twin}: loss (label smoothing {label_smoothing:g}) [bf16 vs exact]", err,
                            tolerances.BF16_FORWARD, f"{err / u:.2f}u",
                            {"exact": exact.loss, "bf16": run.loss, "other_twin_bf16": other.loss}))
    order = [m.torch_key for m in key_map if m.torch_key in exact.grads]
    ours, ref = normwise_error(runs["jax"].grads, exact.grads), normwise_error(runs["torch"].grads, exact.grads)
    per_tensor = {who: gradient_errors(exact.grads, r.grads) for who, r in runs.items()}
    between = gradient_errors(runs["torch"].grads, runs["jax"].grads)
    worst = max(order, key=lambda k: per_tensor["jax"][k] - per_tensor["torch"][k])
    checks.append(Check(
        FAMILY, f"Flax twin: d loss / d param, {len(order)} tensors, error beyond torch's own [bf16 vs exact]",
        ours - ref, tolerances.bf16_gradient_excess(ref),
        f"norm-wise off exact: Flax {ours / u:.1f}u, torch {ref / u:.1f}u, between the twins "
        f"{normwise_error(runs['jax'].grads, runs['torch'].grads) / u:.1f}u; most beyond torch's: {worst}",
        {"reference": "torch float64", "unit_roundoff": u, "flax_normwise": ours, "torch_normwise": ref,
         "tensors": [{"tensor": k, "flax": per_tensor["jax"][k], "torch": per_tensor["torch"][k],
                      "between": between[k]} for k in order]}))
    return checks
