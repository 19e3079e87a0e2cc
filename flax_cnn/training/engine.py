"""The JAX side of the loop: sharded state, jitted steps, orbax checkpoints, weights export."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from flax_cnn.runtime import devices
from flax_cnn.training import optim, schedules
from flax_cnn.checkpoints.orbax_io import Checkpoints
from flax_cnn.model.cnn import build_model, num_params
from flax_cnn.training.step import (Model, TrainState, init_state, make_eval_step, make_train_step, make_tta_step,
                                    zero_metrics)
from flax_cnn.training.config import TrainConfig
from flax_cnn.model.weights import load_weights, save_weights


def compute_dtype(precision: str):
    return jnp.bfloat16 if precision == "bf16" else jnp.float32


class JaxEngine:
    """Holds the replicated `TrainState`; batches arrive as host numpy and are sharded over 'data'."""

    framework = "jax"

    def __init__(self, cfg: TrainConfig, *, steps_per_epoch: int, out: Path,
                 augment: Callable | None = None):
        self.emitted = None
        if cfg.flax_model:  # an emitted model.py: its load() weights, or --init-from through its own load(path)
            from flax_cnn.training.external import emitted_module

            self.emitted, module = emitted_module(cfg)
        else:
            module = build_model(cfg.model_config(), seed=cfg.seed)
            if cfg.init_from:
                load_weights(module, cfg.init_from)
        self.module = module
        self.model = Model.split(module)
        self.lr_table, beta1_table = schedules.tables(cfg, steps_per_epoch)
        self.tx = optim.from_config(cfg, self.lr_table, beta1_table)
        self.mesh = devices.make_mesh(cfg.devices)
        n_dev = self.mesh.devices.size
        for flag, b in (("batch_size", cfg.batch_size), ("eval_batch_size", cfg.eval_batch_size)):
            if b % n_dev:
                raise ValueError(f"--{flag.replace('_', '-')} {b} is not divisible by the {n_dev} devices")
        self.data_sharding = devices.data_sharding(self.mesh)
        self.replicated = devices.replicated(self.mesh)
        self.state: TrainState = self._replicate(init_state(self.model, self.tx, ema=cfg.ema_decay > 0))
        dtype = compute_dtype(cfg.precision)
        self._train_step = make_train_step(self.model, self.tx, label_smoothing=cfg.label_smoothing,
                                           compute_dtype=dtype, augment=augment, ema_decay=cfg.ema_decay)
        self._eval_step = make_eval_step(self.model, compute_dtype=dtype)
        self._tta_step = make_tta_step(self.model, compute_dtype=dtype)
        self.key = self._replicate(jax.random.key_data(jax.random.key(cfg.seed)))
        self.is_primary = jax.process_index() == 0
        self.ckpt = Checkpoints(out, keep=cfg.keep_checkpoints)

    # -- data placement ---------------------------------------------------------------------
    def _replicate(self, tree):
        """Host values → arrays replicated over the mesh (every process passes the same values)."""
        return jax.tree.map(lambda a: jax.make_array_from_process_local_data(self.replicated, np.asarray(a)), tree)

    def _local(self, x: np.ndarray) -> np.ndarray:
        """This process's rows of a global batch (every process builds the same global batch)."""
        p, n = jax.process_index(), jax.process_count()
        size = x.shape[0] // n
        return x[p * size:(p + 1) * size]

    def _put(self, x: np.ndarray) -> jax.Array:
        return jax.make_array_from_process_local_data(self.data_sharding, self._local(x))

    def _get(self, x: jax.Array) -> np.ndarray:
        """A batch-sharded array, gathered from every process."""
        if jax.process_count() > 1:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    @staticmethod
    def _host(tree):
        """Replicated arrays to numpy, reading this process's copy (works multi-host too)."""
        return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)

    # -- the Engine protocol ----------------------------------------------------------------
    def train_step(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.state = self._train_step(self.state, self._put(images), self._put(labels.astype(np.int32)), self.key)

    def epoch_metrics(self) -> dict:
        m = self._host(self.state.metrics)
        return {"loss_sum": float(m["loss_sum"]), "correct": int(m["correct"]), "count": int(m["count"]),
                "nonfinite": int(m["nonfinite"])}

    def reset_epoch_metrics(self) -> None:
        self.state.metrics = self._replicate(zero_metrics())

    def _weights(self) -> tuple:
        """(params, batch_stats) that are evaluated and exported: the EMA's when there is one."""
        return self.state.ema if self.state.ema is not None else (self.state.params, self.state.batch_stats)

    def evaluate(self, batches) -> tuple[float, float, np.ndarray]:
        loss_sum, correct, n, preds = 0.0, 0, 0, []
        params, batch_stats = self._weights()
        for images, labels, mask in batches:
            ls, c, logits = self._eval_step(params, batch_stats, self._put(images),
                                            self._put(labels.astype(np.int32)), self._put(mask))
            loss_sum += float(self._host(ls))
            correct += int(self._host(c))
            n += int(mask.sum())
            preds.append(self._get(logits).argmax(-1)[mask])
        return loss_sum / n, correct / n, np.concatenate(preds)

    def evaluate_tta(self, batches) -> float:
        correct, n = 0, 0
        params, batch_stats = self._weights()
        for images, labels, mask in batches:
            c = self._tta_step(params, batch_stats, self._put(images), self._put(labels.astype(np.int32)),
                               self._put(mask))
            correct += int(self._host(c))
            n += int(mask.sum())
        return correct / n

    def has_checkpoint(self) -> bool:
        return self.ckpt.latest_step() is not None

    def save(self, step: int, meta: dict, *, test_accuracy: float | None = None) -> None:
        self.ckpt.save(step, self.state, meta)
        if test_accuracy is not None:
            self.ckpt.save_best(step, self.state, meta, test_accuracy)

    def restore(self, log=print) -> dict:
        self.state, meta = self.ckpt.restore_latest(self.state, log=log)
        return meta

    def _sync_module(self) -> None:
        """Write the evaluated weights back into the NNX module (for weights export)."""
        from flax import nnx

        nnx.update(self.module, *self._host(self._weights()))

    def export_weights(self, path: Path) -> None:
        self._sync_module()
        if self.emitted is not None:
            self.emitted.save(self.module, path)  # the file's own save: torch naming, as the original's state_dict
        else:
            save_weights(self.module, path)

    def num_params(self) -> int:
        return num_params(self.module)

    def model_stats(self, cfg: TrainConfig) -> dict:
        """{"macs", "receptive_field"} per image of an emitted model, from its traced program (`trace_stats`)."""
        from flax_cnn.model.trace_stats import trace_stats

        m = cfg.model_config()
        st = trace_stats(self.module, (m.input_size, m.input_size, m.in_channels))
        return {"macs": st.macs, "receptive_field": st.receptive_field}

    def close(self) -> None:
        self.ckpt.close()
