"""Family "accuracy": one set of weights evaluated by both twins on the same test images — the
end-to-end question (does the port classify the same?), in eval mode and float32."""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
import torch
from flax import nnx

from parity.suite import tolerances
from parity.suite.results import Check, rel_err
from parity.suite.twins import KeyMappingLike, prepare, to_flax_layout

FAMILY = "accuracy"


def predict_both(torch_model, flax_model, key_map: Sequence[KeyMappingLike], images_nchw: np.ndarray, *,
                 batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(torch logits, Flax logits) in eval mode; Flax batches are padded so one compile serves all."""
    tm, fm = prepare(torch_model, flax_model, key_map)
    tm.eval()
    fm.eval()
    graphdef, state = nnx.split(fm)
    forward = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    t_out, f_out = [], []
    for start in range(0, len(images_nchw), batch_size):
        x = np.ascontiguousarray(images_nchw[start:start + batch_size])
        with torch.no_grad():
            t_out.append(tm(torch.from_numpy(x)).numpy())
        pad = batch_size - len(x)
        xf = to_flax_layout(np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x)
        f_out.append(np.asarray(forward(state, xf))[:len(x)])
    return np.concatenate(t_out), np.concatenate(f_out)


def accuracy_checks(torch_model, flax_model, key_map: Sequence[KeyMappingLike], images_nchw: np.ndarray,
                    labels: np.ndarray, *, batch_size: int = 500, what: str = "") -> list[Check]:
    """Accuracy difference (pp), prediction disagreement (%), and the logits themselves."""
    t, f = predict_both(torch_model, flax_model, key_map, images_nchw, batch_size=batch_size)
    pt, pf = t.argmax(-1), f.argmax(-1)
    acc_t, acc_f = float((pt == labels).mean()), float((pf == labels).mean())
    disagree = np.flatnonzero(pt != pf)
    n = len(labels)
    top2 = np.sort(t, axis=-1)[:, -2:]
    details = {"images": n, "accuracy_torch": acc_t, "accuracy_jax": acc_f, "disagreements": int(disagree.size),
               "disagreeing_images": disagree[:20].tolist(),
               "min_top2_margin_torch": float(np.min(top2[:, 1] - top2[:, 0])) if n else None}
    suffix = f" ({what})" if what else ""
    return [
        Check(FAMILY, f"accuracy difference, pp: torch {100 * acc_t:.2f} % vs jax {100 * acc_f:.2f} %, "
                      f"{n} test images{suffix}", 100 * abs(acc_t - acc_f), tolerances.ACCURACY_PP, "", details),
        Check(FAMILY, f"prediction disagreement, %: {disagree.size} of {n} images", 100 * disagree.size / max(n, 1),
              tolerances.DISAGREEMENT_PCT, "" if not disagree.size else f"first image: {int(disagree[0])}", details),
        Check(FAMILY, f"test-set logits, {n} images [float32]", rel_err(f, t), tolerances.FORWARD_F32, "",
              {"max_abs_logit": float(np.max(np.abs(t))) if n else 0.0}),
    ]
