"""`python -m torch_ref.lr_find`: the LR range test on the torch twin (see `--help`)."""

from __future__ import annotations

import copy
import sys

import numpy as np
import torch
import torch.nn.functional as F

from flax_cnn.training import lr_range
from flax_cnn.training.lr_range import LRFindConfig, LRFindResult


def find_lr(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches, lrs: np.ndarray, *,
            label_smoothing: float = 0.0, smooth: float = 0.05, diverge_th: float = 5.0,
            progress: bool = True) -> LRFindResult:
    """Sweep `lrs` on `batches`; model and optimizer state are restored afterwards."""
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(optimizer.state_dict())
    it = iter(batches)
    model.train()

    def one(i: int) -> float:
        x, y = next(it)
        for g in optimizer.param_groups:
            g["lr"] = float(lrs[i])
        loss = F.cross_entropy(model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))),
                               torch.from_numpy(y.astype(np.int64)), label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    try:
        return lr_range.range_test(one, lrs, smooth=smooth, diverge_th=diverge_th, progress=progress)
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_opt)


def _find(lcfg: LRFindConfig) -> LRFindResult:
    from flax_cnn.model.config import ConfigError
    from torch_ref.model import build_model, build_torch_model
    from torch_ref.optim import make_optimizer

    cfg = lcfg.train
    if cfg.flax_model:
        raise ConfigError("--flax-model is an emitted Flax model for the JAX LR finder; the torch one takes "
                          "the original with --torch-model pkg.mod:factory")
    torch.manual_seed(cfg.seed)
    if cfg.torch_model:  # the user's module, as the torch trainer builds it
        model = build_torch_model(cfg.torch_model, seed=cfg.seed, num_classes=cfg.model_config().num_classes)
    else:
        model = build_model(cfg.model_config(), seed=cfg.seed)
    opt = make_optimizer(model.parameters(), cfg)
    lrs = lr_range.lr_sweep(lcfg.start_lr, lcfg.end_lr, lcfg.num_iter)
    return find_lr(model, opt, lr_range.batches(cfg, lcfg.num_iter), lrs, label_smoothing=cfg.label_smoothing,
                   smooth=lcfg.smooth, diverge_th=lcfg.diverge_th, progress=cfg.progress)


def main(argv=None) -> int:
    return lr_range.main(_find, argv, "python -m torch_ref.lr_find", "torch")


if __name__ == "__main__":
    sys.exit(main())
