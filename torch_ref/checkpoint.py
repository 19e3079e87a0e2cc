"""Checkpoints of the torch trainer without pickle: safetensors for tensors, JSON for the rest.

Layout of one checkpoint directory `<root>/<step>/`: `model.safetensors` (state_dict),
`optimizer.safetensors` + `optimizer.json` (per-parameter Adam moments; param_groups),
`scheduler.json`, `rng.safetensors` (torch's CPU generator state, for dropout), `meta.json`, and
`ema.safetensors` (state_dict of the weight average) when the run keeps one, and last
`checksums.json` (sizes and SHA-256 of the others, `flax_cnn.checkpoints.checksums`). Written to a
temporary directory and renamed, so a crash never leaves half a checkpoint; `--resume` verifies
the checksums and restores the newest step that passes (`flax_cnn.checkpoints.resume`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from flax_cnn.checkpoints import checksums, resume
from flax_cnn.runtime.faults import DiskFull, disk_full_message, is_disk_full


def _optimizer_split(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {"param_groups": sd["param_groups"], "state": {}}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars["state"].setdefault(str(idx), {})[name] = v
    return tensors, scalars


def _optimizer_join(tensors: dict[str, torch.Tensor], scalars: dict) -> dict:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    for idx, st in scalars["state"].items():
        state.setdefault(int(idx), {}).update(st)
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in scalars["param_groups"]]
    return {"state": state, "param_groups": groups}


def save(dirpath: Path, *, model, optimizer, scheduler, metrics: dict[str, torch.Tensor], meta: dict,
         ema=None) -> None:
    tmp = dirpath.with_name(dirpath.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    tensors, scalars = _optimizer_split(optimizer.state_dict())
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(scalars))
    (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict() if scheduler is not None else None))
    save_file({"cpu": torch.get_rng_state(), **{f"metric.{k}": v.detach().cpu() for k, v in metrics.items()}},
              str(tmp / "rng.safetensors"))
    if ema is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in ema.state_dict().items()}, str(tmp / "ema.safetensors"))
    (tmp / "meta.json").write_text(json.dumps(meta))
    checksums.write(tmp)
    shutil.rmtree(dirpath, ignore_errors=True)
    tmp.rename(dirpath)


def load(dirpath: Path, *, model, optimizer, scheduler, ema=None) -> tuple[dict[str, torch.Tensor], dict]:
    """Restore model, optimizer, scheduler, RNG (and the EMA) in place; returns (metric sums, meta)."""
    model.load_state_dict(load_file(str(dirpath / "model.safetensors")), strict=True)
    if ema is not None:
        ema.load_state_dict(load_file(str(dirpath / "ema.safetensors")), strict=True)
    optimizer.load_state_dict(_optimizer_join(load_file(str(dirpath / "optimizer.safetensors")),
                                              json.loads((dirpath / "optimizer.json").read_text())))
    sched = json.loads((dirpath / "scheduler.json").read_text())
    if scheduler is not None and sched is not None:
        scheduler.load_state_dict(sched)
    extra = load_file(str(dirpath / "rng.safetensors"))
    torch.set_rng_state(extra.pop("cpu"))
    metrics = {k.split(".", 1)[1]: v for k, v in extra.items()}
    return metrics, json.loads((dirpath / "meta.json").read_text())


class Checkpoints:
    """`<out>/checkpoints/<step>/` keeps the last `keep`; `<out>/best/<step>/` the best test accuracy."""

    def __init__(self, out: Path, *, keep: int):
        self.latest_root, self.best_root, self.keep = out / "checkpoints", out / "best", keep
        for root in (self.latest_root, self.best_root):  # saves cut short (kill, full disk): never used
            for tmp in root.glob("*.tmp") if root.is_dir() else ():
                shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _steps(root: Path) -> list[int]:
        return sorted(int(p.name) for p in root.glob("*") if p.is_dir() and p.name.isdigit()) if root.exists() else []

    def latest_step(self) -> int | None:
        steps = self._steps(self.latest_root)
        return steps[-1] if steps else None

    def _save(self, dirpath: Path, **state) -> None:
        """`save`, turning a full disk into DiskFull after removing the partial checkpoint."""
        try:
            save(dirpath, **state)
        except Exception as e:
            if not is_disk_full(e):
                raise
            shutil.rmtree(dirpath.with_name(dirpath.name + ".tmp"), ignore_errors=True)
            kept = [s for s in self._steps(dirpath.parent) if str(s) != dirpath.name]
            raise DiskFull(disk_full_message(int(dirpath.name), dirpath.parent, kept)) from None

    def _best_accuracy(self, steps: list[int]) -> float | None:
        """The kept best's test accuracy; None if there is none or it cannot be read (it is replaced)."""
        try:
            return json.loads((self.best_root / str(steps[-1]) / "meta.json").read_text()).get("test_accuracy")
        except (IndexError, OSError, ValueError, AttributeError):
            return None

    def save(self, step: int, *, test_accuracy: float | None = None, **state) -> None:
        self._save(self.latest_root / str(step), **state)
        for old in self._steps(self.latest_root)[:-self.keep]:
            shutil.rmtree(self.latest_root / str(old))
        if test_accuracy is None:
            return
        best = self._steps(self.best_root)
        prev = self._best_accuracy(best)
        if prev is None or test_accuracy > prev:
            self._save(self.best_root / str(step), **dict(state, meta=dict(state["meta"], test_accuracy=test_accuracy)))
            for old in best:
                if old != step:
                    shutil.rmtree(self.best_root / str(old))

    def load_latest(self, *, log=print, **objs) -> tuple[dict, dict]:
        """Restore the newest intact checkpoint into `objs` (model, optimizer, scheduler); damaged newer
        ones are reported through `log` and moved aside; FileError if none is intact."""
        _, got = resume.restore_newest_intact(self.latest_root, self._steps(self.latest_root),
                                              lambda s: load(self.latest_root / str(s), **objs), log=log)
        return got
