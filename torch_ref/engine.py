"""The torch side of the shared loop (`flax_cnn.training.loop`): eager steps, safetensors checkpoints."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from flax_cnn.model.config import ConfigError
from flax_cnn.training.config import TrainConfig
from torch_ref import checkpoint
from torch_ref.macs import forward_macs
from torch_ref.model import build_model, build_torch_model
from torch_ref.optim import make_optimizer, make_scheduler
from torch_ref.precision import autocast
from torch_ref.weights import load_weights, save_weights


def _zero_metrics(device) -> dict[str, torch.Tensor]:
    return {"loss_sum": torch.zeros((), dtype=torch.float64, device=device),
            "correct": torch.zeros((), dtype=torch.int64, device=device),
            "count": torch.zeros((), dtype=torch.int64, device=device),
            "nonfinite": torch.zeros((), dtype=torch.int64, device=device)}


class TorchEngine:
    """Model, Adam and the LR scheduler; metric sums stay tensors so steps need no host sync.

    With `ema_decay`, `self.ema` is a copy of the model whose parameters and BatchNorm buffers
    follow the same moving average as the JAX step's (`flax_cnn.training.step.ema_decay_at`); it is what
    is evaluated, exported and checkpointed alongside the model.
    """

    framework = "torch"
    is_primary = True

    def __init__(self, cfg: TrainConfig, *, steps_per_epoch: int, out: Path, device: str | None = None):
        if cfg.augment == "device":
            raise ConfigError("--augment device is the JAX on-device path; the torch trainer supports "
                              "albumentations and none")
        if cfg.num_processes > 1:
            raise ConfigError("--num-processes > 1 is a JAX multi-process run; the torch trainer runs in one process")
        if cfg.flax_model:
            raise ConfigError("--flax-model is an emitted Flax model for the JAX trainer; the torch trainer "
                              "takes the original with --torch-model pkg.mod:factory")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(cfg.seed)
        if cfg.torch_model:
            self.model = build_torch_model(cfg.torch_model, seed=cfg.seed,
                                           num_classes=cfg.model_config().num_classes)
        else:
            self.model = build_model(cfg.model_config(), seed=cfg.seed)
        if cfg.init_from:
            load_weights(self.model, cfg.init_from)
        self.model.to(self.device).train()
        self.opt = make_optimizer(self.model.parameters(), cfg)
        self.sched = make_scheduler(self.opt, cfg, steps_per_epoch)
        self.label_smoothing = cfg.label_smoothing
        self.precision = cfg.precision
        self.steps_per_epoch, self.steps = steps_per_epoch, 0
        self.ema_decay = cfg.ema_decay
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if cfg.ema_decay else None
        # state_dict tensors alias the live ones (optimizer steps and loads are in place)
        self._ema_pairs = list(zip(self.ema.state_dict().values(), self.model.state_dict().values())) if self.ema else []
        self.metrics = _zero_metrics(self.device)
        self.ckpt = checkpoint.Checkpoints(out, keep=cfg.keep_checkpoints)

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device, non_blocking=True)

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> None:
        x = self._tensor(images.transpose(0, 3, 1, 2))
        y = self._tensor(labels.astype(np.int64))
        with autocast(self.precision, self.device):  # bf16: convs and matmuls; the loss on float32 logits
            logits = self.model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        ok = torch.isfinite(loss) & torch.stack([torch.isfinite(g).all() for g in grads]).all()
        # A non-finite step is not applied (as in the JAX step); the loop stops at its next sync.
        if bool(ok):
            self.opt.step()
            if self.sched is not None:
                self.sched.step()
            if self.ema is not None:
                self._update_ema()
        self.steps += 1
        n = y.shape[0]
        m = self.metrics
        m["loss_sum"] += torch.where(ok, loss.detach().double() * n, 0.0)
        m["correct"] += torch.where(ok, (logits.argmax(1) == y).sum(), 0)
        m["count"] += torch.where(ok, n, 0)
        m["nonfinite"] += (~ok).long()

    @torch.no_grad()
    def _update_ema(self) -> None:
        d = min(self.ema_decay, (1.0 + self.steps) / (10.0 + self.steps))
        for e, m in self._ema_pairs:
            if e.dtype.is_floating_point:
                e.mul_(d).add_(m, alpha=1 - d)
            else:  # BatchNorm's num_batches_tracked
                e.copy_(m)

    @property
    def _evaluated(self) -> torch.nn.Module:
        return self.ema if self.ema is not None else self.model

    def epoch_metrics(self) -> dict:
        m = {k: v.item() for k, v in self.metrics.items()}
        return {"loss_sum": float(m["loss_sum"]), "correct": int(m["correct"]), "count": int(m["count"]),
                "nonfinite": int(m["nonfinite"])}

    def reset_epoch_metrics(self) -> None:
        self.metrics = _zero_metrics(self.device)

    @torch.no_grad()
    def evaluate(self, batches) -> tuple[float, float, np.ndarray]:
        model = self._evaluated
        model.eval()
        loss_sum, correct, n, preds = 0.0, 0, 0, []
        try:
            for images, labels, mask in batches:
                with autocast(self.precision, self.device):
                    logits = model(self._tensor(images[mask].transpose(0, 3, 1, 2))).float()
                y = self._tensor(labels[mask].astype(np.int64))
                loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
                p = logits.argmax(1)
                correct += int((p == y).sum())
                n += len(y)
                preds.append(p.cpu().numpy())
        finally:
            model.train()
        return loss_sum / n, correct / n, np.concatenate(preds)

    @torch.no_grad()
    def evaluate_tta(self, batches) -> float:
        model = self._evaluated
        model.eval()
        correct, n = 0, 0
        try:
            for images, labels, mask in batches:
                x = self._tensor(images[mask].transpose(0, 3, 1, 2))
                probs = model(x).softmax(1) + model(torch.flip(x, dims=(3,))).softmax(1)
                correct += int((probs.argmax(1) == self._tensor(labels[mask].astype(np.int64))).sum())
                n += len(x)
        finally:
            model.train()
        return correct / n

    def has_checkpoint(self) -> bool:
        return self.ckpt.latest_step() is not None

    def save(self, step: int, meta: dict, *, test_accuracy: float | None = None) -> None:
        self.ckpt.save(step, model=self.model, optimizer=self.opt, scheduler=self.sched, metrics=self.metrics,
                       meta=meta, test_accuracy=test_accuracy, ema=self.ema)

    def restore(self, log=print) -> dict:
        metrics, meta = self.ckpt.load_latest(log=log, model=self.model, optimizer=self.opt, scheduler=self.sched,
                                              ema=self.ema)
        self.metrics = {k: v.to(self.device) for k, v in metrics.items()}
        self.steps = meta["epoch"] * self.steps_per_epoch + meta["step_in_epoch"]
        return meta

    def export_weights(self, path: Path) -> None:
        save_weights(self._evaluated, path)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def model_stats(self, cfg: TrainConfig) -> dict:
        """{"macs", "receptive_field"} per image of a `--torch-model`: MACs by torch's own FlopCounterMode
        (2 flops per multiply-accumulate), no receptive field (the JAX trainer traces the port for it)."""
        m = cfg.model_config()
        x = torch.zeros(1, m.in_channels, m.input_size, m.input_size, device=self.device)
        return {"macs": forward_macs(self._evaluated, x), "receptive_field": None}

    def close(self) -> None:
        pass
