"""The functional core: the model is split once; jitted steps map state → state with donation.

`TrainState` holds everything a step changes — params, BatchNorm statistics, optimizer state,
the step counter, the epoch's metric sums and (with `ema_decay`) the moving average of the weights
and BatchNorm statistics — so a step needs no host sync, and a checkpoint of it resumes an epoch exactly. Non-finite losses or gradients leave the state unchanged and are
counted in `metrics["nonfinite"]`; the loop checks that count whenever it syncs.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from flax_cnn.model import ops

METRIC_KEYS = ("loss_sum", "correct", "count", "nonfinite")


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class TrainState:
    params: nnx.State
    batch_stats: nnx.State
    opt_state: optax.OptState
    step: jax.Array
    metrics: dict[str, jax.Array]
    ema: tuple[nnx.State, nnx.State] | None = None  # (params, batch_stats) averaged; None = no EMA


def zero_metrics() -> dict[str, jax.Array]:
    return {"loss_sum": jnp.zeros((), jnp.float32), "correct": jnp.zeros((), jnp.int32),
            "count": jnp.zeros((), jnp.int32), "nonfinite": jnp.zeros((), jnp.int32)}


@dataclasses.dataclass(frozen=True)
class Model:
    """A split model: graph definitions for train and eval mode (static) plus the initial state."""

    train_def: nnx.GraphDef
    eval_def: nnx.GraphDef
    params: nnx.State
    batch_stats: nnx.State

    @classmethod
    def split(cls, model: nnx.Module) -> Model:
        model.eval()
        eval_def, _, _ = nnx.split(model, nnx.Param, nnx.BatchStat)
        model.train()
        train_def, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
        return cls(train_def, eval_def, params, batch_stats)

    def merge(self, params, batch_stats, *, train: bool) -> nnx.Module:
        """A module over fresh Variables at the current trace level (so BN may update them)."""
        fresh = lambda s: jax.tree.map(lambda a: a, s)  # noqa: E731
        return nnx.merge(self.train_def if train else self.eval_def, fresh(params), fresh(batch_stats))


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Per-example CE; smoothing matches torch's `label_smoothing` ((1-e)*onehot + e/K).

    In at least float32: bf16 logits are upcast, float64 ones (the parity suite's) stay float64.
    """
    dtype = jnp.promote_types(logits.dtype, jnp.float32)
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=dtype)
    if label_smoothing:
        onehot = optax.smooth_labels(onehot, label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(dtype), onehot)


def init_state(model: Model, tx: optax.GradientTransformation, *, ema: bool = False) -> TrainState:
    copy = lambda s: jax.tree.map(jnp.array, s)  # noqa: E731  (own buffers: the state is donated)
    return TrainState(model.params, model.batch_stats, tx.init(model.params), jnp.zeros((), jnp.int32), zero_metrics(),
                      (copy(model.params), copy(model.batch_stats)) if ema else None)


def ema_decay_at(decay: float, step):
    """The EMA's decay at 0-based `step`: min(decay, (1 + step) / (10 + step)), so early weights fade fast."""
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(avg, new, decay):
    """One EMA step of a leaf; integer leaves (BatchNorm's num_batches_tracked) take the new value, as the
    torch twin's do: averaging an int32 counter made it float32 and recompiled the step on step 2."""
    if not jnp.issubdtype(avg.dtype, jnp.floating):
        return new
    return (decay * avg + (1 - decay) * new).astype(avg.dtype)


def make_train_step(model: Model, tx: optax.GradientTransformation, *, label_smoothing: float = 0.0,
                    compute_dtype=jnp.float32, augment: Callable | None = None, ema_decay: float = 0.0) -> Callable:
    """train_step(state, images, labels, key_data) -> state (jitted, `state` donated).

    With `ema_decay` > 0 (and a state from `init_state(..., ema=True)`) every applied step also
    moves `state.ema` towards the new params and BatchNorm statistics (`ema_decay_at`).

    `augment(key, images, step) -> float images` runs first when given (the on-device path); dropout
    and augmentation keys are folded from `key` and the step number, so a resumed run draws the
    same randomness. `key_data` is raw (uint32) key data so it can be replicated across hosts.
    """

    def train_step(state: TrainState, images, labels, key_data):
        step_key = jax.random.fold_in(jax.random.wrap_key_data(key_data), state.step)
        if augment is not None:
            images = augment(jax.random.fold_in(step_key, 1), images, state.step)
        x = images.astype(compute_dtype)

        def loss_fn(params):
            m = model.merge(params, state.batch_stats, train=True)
            logits = m(x, key=jax.random.fold_in(step_key, 2))
            logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
            loss = cross_entropy(logits, labels, label_smoothing).mean()
            return loss, (logits, nnx.state(m, nnx.BatchStat))

        (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, new_opt = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        ok = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)  # noqa: E731
        n = labels.shape[0]
        m = state.metrics
        metrics = {
            "loss_sum": m["loss_sum"] + jnp.where(ok, loss * n, 0.0),
            "correct": m["correct"] + jnp.where(ok, (logits.argmax(-1) == labels).sum(), 0),
            "count": m["count"] + jnp.where(ok, n, 0),
            "nonfinite": m["nonfinite"] + (~ok).astype(jnp.int32),
        }
        ema = state.ema
        if ema_decay:
            d = ema_decay_at(ema_decay, state.step.astype(jnp.float32))
            ema = keep(jax.tree.map(lambda e, p: ema_update(e, p, d), ema, (new_params, new_stats)), ema)
        return TrainState(keep(new_params, state.params), keep(new_stats, state.batch_stats),
                          keep(new_opt, state.opt_state), state.step + 1, metrics, ema)

    return jax.jit(ops.pinned(train_step), donate_argnums=0, compiler_options=ops.cpu_compiler_options())


def make_eval_step(model: Model, *, compute_dtype=jnp.float32) -> Callable:
    """eval_step(params, batch_stats, images, labels, mask) -> (loss_sum, correct, logits)."""

    def eval_step(params, batch_stats, images, labels, mask):
        m = model.merge(params, batch_stats, train=False)
        logits = m(images.astype(compute_dtype)).astype(jnp.float32)
        loss = cross_entropy(logits, labels)
        correct = (logits.argmax(-1) == labels) & mask
        return jnp.where(mask, loss, 0.0).sum(), correct.sum(), logits

    return jax.jit(ops.pinned(eval_step), compiler_options=ops.cpu_compiler_options())


def make_tta_step(model: Model, *, compute_dtype=jnp.float32) -> Callable:
    """tta_step(params, batch_stats, images NHWC, labels, mask) -> correct count of the softmax
    averaged over each image and its horizontal flip."""

    def tta_step(params, batch_stats, images, labels, mask):
        m = model.merge(params, batch_stats, train=False)
        x = images.astype(compute_dtype)
        probs = sum(jax.nn.softmax(m(v).astype(jnp.float32)) for v in (x, x[:, :, ::-1]))
        return ((probs.argmax(-1) == labels) & mask).sum()

    return jax.jit(ops.pinned(tta_step), compiler_options=ops.cpu_compiler_options())
