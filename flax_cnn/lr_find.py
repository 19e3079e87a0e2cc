"""`python -m flax_cnn.lr_find`: the LR range test with the JAX trainer's own step (see `--help`)."""

from __future__ import annotations

import sys

import numpy as np

from flax_cnn.training import lr_range
from flax_cnn.training.lr_range import LRFindConfig, LRFindResult


def find_lr(module, batches, lrs: np.ndarray, *, weight_decay: float = 0.0, beta1: float = 0.9,
            beta2: float = 0.999, label_smoothing: float = 0.0, smooth: float = 0.05, diverge_th: float = 5.0,
            progress: bool = True) -> LRFindResult:
    """Sweep `lrs` on `batches` with Adam; `module` is left exactly as it was (steps run on a copy)."""
    import jax

    from flax_cnn.training import optim
    from flax_cnn.training.step import Model, init_state, make_train_step

    model = Model.split(module)
    tx = optim.adam(lrs, beta1=beta1, beta2=beta2, weight_decay=weight_decay)
    state = jax.tree.map(lambda a: jax.numpy.array(a, copy=True), init_state(model, tx))
    step = make_train_step(model, tx, label_smoothing=label_smoothing)
    key = jax.random.key_data(jax.random.key(0))
    it = iter(batches)
    holder = {"state": state, "loss_sum": 0.0}

    def one(i: int) -> float:
        x, y = next(it)
        holder["state"] = step(holder["state"], x, y.astype(np.int32), key)
        m = jax.device_get(holder["state"].metrics)
        if m["nonfinite"]:
            return float("nan")
        loss = float(m["loss_sum"]) - holder["loss_sum"]
        holder["loss_sum"] = float(m["loss_sum"])
        return loss / len(y)

    module.train()
    return lr_range.range_test(one, lrs, smooth=smooth, diverge_th=diverge_th, progress=progress)


def _module(cfg):
    """The model the JAX trainer would train: the twin, an emitted model.py (`--flax-model`), or the port of
    `--torch-model` (written to a temporary folder by `python -m parity port`, as the trainer does)."""
    if not (cfg.flax_model or cfg.torch_model):
        from flax_cnn.model.cnn import build_model

        return build_model(cfg.model_config(), seed=cfg.seed)
    import tempfile
    from pathlib import Path

    from flax_cnn.training import external

    if not cfg.flax_model:
        folder = Path(tempfile.mkdtemp(prefix="flax_cnn_lr_find_port_"))
        path = external.port_torch_model(cfg.torch_model, folder, seed=cfg.seed, log=lambda *_: None)
        cfg = cfg.replace(flax_model=str(path))
    return external.emitted_module(cfg)[1]


def _find(lcfg: LRFindConfig) -> LRFindResult:
    cfg = lcfg.train
    module = _module(cfg)
    lrs = lr_range.lr_sweep(lcfg.start_lr, lcfg.end_lr, lcfg.num_iter)
    return find_lr(module, lr_range.batches(cfg, lcfg.num_iter), lrs, weight_decay=cfg.weight_decay,
                   beta1=cfg.beta1, beta2=cfg.beta2, label_smoothing=cfg.label_smoothing, smooth=lcfg.smooth,
                   diverge_th=lcfg.diverge_th, progress=cfg.progress)


def main(argv=None) -> int:
    return lr_range.main(_find, argv, "python -m flax_cnn.lr_find", "jax")


if __name__ == "__main__":
    sys.exit(main())
