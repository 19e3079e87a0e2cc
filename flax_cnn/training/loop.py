"""The epoch loop both trainers share: data → steps → eval → checkpoint → report.

A trainer supplies an `Engine` (the JAX one in `flax_cnn.training.engine`, the torch one in
`torch_ref.engine`); everything else — data, progress bar, NaN guard, resume, metrics.jsonl,
plots, summary — is this one page, so the two twins cannot drift apart.
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from flax_cnn.runtime import files
from flax_cnn.training import external, report
from flax_cnn.training.run_data import RunData
from flax_cnn.inference.run_dir import write_data_json
from flax_cnn.training.config import TrainConfig
from flax_cnn.training.errors import TrainingError


class Engine(Protocol):
    """What the loop needs from a framework."""

    framework: str
    is_primary: bool

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> None: ...
    def epoch_metrics(self) -> dict: ...          # host sync: loss_sum, correct, count, nonfinite
    def reset_epoch_metrics(self) -> None: ...
    def evaluate(self, batches) -> tuple[float, float, np.ndarray]: ...  # loss, accuracy, preds
    def evaluate_tta(self, batches) -> float: ...  # accuracy of the image + flip softmax average
    def has_checkpoint(self) -> bool: ...
    def save(self, step: int, meta: dict, *, test_accuracy: float | None = None) -> None: ...
    def restore(self, log) -> dict: ...  # newest intact checkpoint; damaged ones reported via log
    def export_weights(self, path: Path) -> None: ...
    def num_params(self) -> int: ...
    def close(self) -> None: ...


class _StopFlag:
    """SIGTERM/SIGINT ask the loop to checkpoint and stop at the next step boundary."""

    def __init__(self):
        self.raised = False
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.raised:  # second signal: give up at once
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def _export(engine, path: Path) -> None:
    """Weights export; a full disk stops the run with one line naming the file (whichever write meets it)."""
    from flax_cnn.runtime.faults import writing

    with writing(path):
        engine.export_weights(path)


def _progress(cfg: TrainConfig, engine: Engine, epoch: int, steps: int, start: int):
    from tqdm.auto import tqdm

    return tqdm(total=steps, initial=start, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                disable=not (cfg.progress and engine.is_primary), leave=True, dynamic_ncols=True)


def _check_finite(m: dict, epoch: int, step: int) -> None:
    if m["nonfinite"]:
        raise TrainingError(
            f"non-finite loss or gradient in epoch {epoch + 1} before step {step}: stopped; those steps "
            "were not applied and the last good checkpoint is kept (lower --max-lr, or check the data)")


# Flags a resumed run may change: they change nothing it computes, or (device layout) only the
# float32 summation order. Any other difference would silently make a different run.
RESUMABLE_CHANGES = {"resume", "progress", "log_every", "workers", "tensorboard", "checkpoint_every", "tta_flip",
                      "keep_checkpoints", "eval_batch_size", "data_dir", "out", "init_from", "devices",
                      "cpu_devices", "coordinator", "num_processes", "process_id"}


def _check_same_run(cfg: TrainConfig, out: Path) -> None:
    saved = out / "config.json"
    if not saved.exists():
        return
    old = TrainConfig.from_dict(files.read_json(saved, what="--resume: the run's config.json")).to_dict()
    for k, v in cfg.to_dict().items():
        if k not in RESUMABLE_CHANGES and old.get(k) != v:
            raise TrainingError(f"--resume: --{k.replace('_', '-')} is {v!r} but the run in {out} used {old.get(k)!r}; "
                                "resume with the same flags (or start a new --out)")


def run(cfg: TrainConfig, engine: Engine, data: RunData, lr_table: np.ndarray, *,
        out: Path, log=print) -> dict:
    """Train `cfg.epochs` epochs (or finish a resumed run); returns the summary dict."""
    if not engine.is_primary:  # multi-process: process 0 speaks for the run
        log = _silent
    steps = data.train.steps_per_epoch
    history: list[dict] = []
    start_epoch, start_step = 0, 0
    carried = 0.0  # seconds an interrupted epoch had run before this process resumed it
    wall0 = time.perf_counter()
    if cfg.resume and engine.has_checkpoint():
        _check_same_run(cfg, out)
        meta = engine.restore(log)
        history, start_epoch, start_step = meta["history"], meta["epoch"], meta["step_in_epoch"]
        if engine.is_primary and history:  # as the checkpoint has it (a write cut short, an older checkpoint)
            report.write_metrics(out / "metrics.jsonl", history)
        if meta.get("finished"):
            summary = _read_summary(out)
            if summary is not None:
                log(f"{out}: this run already finished {len(history)} epochs; nothing to do.")
                return summary
            log(f"{out}: all {len(history)} epochs are trained; writing the final artefacts the last run did not")
            if engine.is_primary:
                report.plot_curves(history, out / "curves.png", title=f"{engine.framework}: {out.name}")
            return finish(cfg, engine, data, history, out, wall=meta.get("wall_seconds", 0.0), log=log)
        log(f"resuming {out} at epoch {start_epoch + 1}, step {start_step}/{steps}")
        wall0 -= meta.get("wall_seconds", 0.0)
        carried = meta.get("epoch_seconds_so_far", 0.0)
    elif cfg.resume:
        log(f"{out}: no checkpoint to resume from; starting a new run")
    elif engine.has_checkpoint():
        raise TrainingError(f"--out {out} already holds a run: pass --resume to continue it, or choose another --out")
    if engine.is_primary:
        out.mkdir(parents=True, exist_ok=True)
        external.save_config(cfg, out / "config.json")
        write_data_json(out, data.stats, data.class_names)
        if start_epoch == 0 and start_step == 0:
            _export(engine, out / "init.safetensors")
    tb = report.TensorBoard(out / "tensorboard" if (cfg.tensorboard and engine.is_primary) else None)

    def meta(epoch: int, step_in_epoch: int, finished: bool = False, epoch_t0: float | None = None) -> dict:
        return {"epoch": epoch, "step_in_epoch": step_in_epoch, "history": history, "finished": finished,
                "wall_seconds": time.perf_counter() - wall0, "framework": engine.framework,
                "epoch_seconds_so_far": 0.0 if epoch_t0 is None else time.perf_counter() - epoch_t0}

    with _StopFlag() as stop:
        for epoch in range(start_epoch, cfg.epochs):
            if start_step == 0:
                engine.reset_epoch_metrics()
            # a resumed epoch counts the seconds it ran before the interruption too
            t0, carried = time.perf_counter() - carried, 0.0
            t_resume = time.perf_counter()
            bar = _progress(cfg, engine, epoch, steps, start_step)
            step = start_step
            for images, labels in data.train.epoch(epoch, start_step):
                engine.train_step(images, labels)
                step += 1
                bar.update(1)
                if step % cfg.log_every == 0 or step == steps:
                    m = engine.epoch_metrics()
                    _check_finite(m, epoch, step)
                    dt = time.perf_counter() - t_resume
                    bar.set_postfix(loss=f"{m['loss_sum'] / max(m['count'], 1):.3f}",
                                    acc=f"{m['correct'] / max(m['count'], 1):.3f}",
                                    lr=f"{lr_table[epoch * steps + step - 1]:.2e}",
                                    img_s=f"{(step - start_step) * cfg.batch_size / dt:.0f}")
                if step < steps and (stop.raised or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0)):
                    _check_finite(engine.epoch_metrics(), epoch, step)
                    engine.save(epoch * steps + step, meta(epoch, step, epoch_t0=t0))
                    if stop.raised:
                        bar.close()
                        log(f"stopped by signal at epoch {epoch + 1}, step {step}: checkpoint saved; --resume continues")
                        raise SystemExit(130)
            bar.close()
            train_seconds = time.perf_counter() - t_resume
            m = engine.epoch_metrics()
            _check_finite(m, epoch, steps)
            test_loss, test_acc, _ = engine.evaluate(data.test_batches())
            row = {
                "epoch": epoch + 1,
                "train_loss": m["loss_sum"] / m["count"],
                "train_accuracy": m["correct"] / m["count"],
                "test_loss": test_loss,
                "test_accuracy": test_acc,
                "lr": float(lr_table[(epoch + 1) * steps - 1]),
                "epoch_seconds": round(time.perf_counter() - t0, 3),
                "images_per_second": round((steps - start_step) * cfg.batch_size / train_seconds, 1),
            }
            if cfg.tta_flip:
                row["test_accuracy_tta"] = engine.evaluate_tta(data.test_batches())
            if engine.is_primary and all(test_acc > r["test_accuracy"] for r in history):
                _export(engine, out / "best.safetensors")  # before the checkpoint: a crash redoes it
            history.append(row)
            finished = epoch + 1 == cfg.epochs
            engine.save((epoch + 1) * steps, meta(epoch + 1, 0, finished), test_accuracy=test_acc)
            if engine.is_primary:
                report.write_metrics(out / "metrics.jsonl", history)
                # curves each epoch: a long run can be watched, and a crash loses none of them
                report.plot_curves(history, out / "curves.png", title=f"{engine.framework}: {out.name}")
                tb.scalars(row, epoch + 1)
            log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} | "
                f"test loss {test_loss:.4f} acc {test_acc:.4f} | {row['epoch_seconds']:.1f} s, "
                f"{row['images_per_second']:.0f} img/s")
            start_step = 0
            if stop.raised and not finished:
                log(f"stopped by signal after epoch {epoch + 1}: checkpoint saved; --resume continues")
                raise SystemExit(130)
    tb.close()
    return finish(cfg, engine, data, history, out, wall=time.perf_counter() - wall0, log=log)


def finish(cfg: TrainConfig, engine: Engine, data: RunData, history: list[dict], out: Path, *,
           wall: float, log=print) -> dict:
    """Final artefacts: weights, curves, confusion matrix, misclassified grid, summary table."""
    _, _, preds = engine.evaluate(data.test_batches())
    best = max(history, key=lambda r: r["test_accuracy"])
    summary = {
        "framework": engine.framework,
        "epochs": len(history),
        "final_test_accuracy": history[-1]["test_accuracy"],
        "best_test_accuracy": best["test_accuracy"],
        "best_epoch": best["epoch"],
        **({"final_test_accuracy_tta": history[-1]["test_accuracy_tta"]} if "test_accuracy_tta" in history[-1] else {}),
        "params": engine.num_params(),
        **_model_stats(cfg, engine),  # "macs", "receptive_field" (None: "n/a")
        "wall_seconds": round(wall, 1),
        "epoch_seconds_total": round(sum(r["epoch_seconds"] for r in history), 1),  # across resumes too
        "train_examples": data.n_train,
        "test_examples": int(len(data.test_labels)),
    }
    if engine.is_primary:
        _export(engine, out / "model.safetensors")
        report.plot_confusion(data.test_labels, preds, data.class_names, out / "confusion.png")
        report.plot_misclassified(data.test_images, data.test_labels, preds, data.class_names,
                                  out / "misclassified.png")
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(report.summary_table([
        ("framework", engine.framework),
        ("final test accuracy", f"{100 * summary['final_test_accuracy']:.2f} %"),
        ("best test accuracy", f"{100 * summary['best_test_accuracy']:.2f} % (epoch {summary['best_epoch']})"),
        ("params", f"{summary['params']:,}"),
        *([("model", external.describe(cfg))] if external.is_external(cfg) else []),
        ("receptive field", "n/a" if summary["receptive_field"] is None else f"{summary['receptive_field']} px"),
        ("MACs per image", "n/a" if summary["macs"] is None else f"{summary['macs'] / 1e6:.2f} M"),
        ("wall time", _hms(wall) if wall >= summary["epoch_seconds_total"]  # else resumed: this process only
         else f"{_hms(wall)} this process, {_hms(summary['epoch_seconds_total'])} all epochs"),
        ("run directory", str(out)),
    ]))
    return summary


def _model_stats(cfg: TrainConfig, engine: Engine) -> dict:
    """A ModelConfig's own numbers (`analysis`), or what the engine measures of an external model."""
    if external.is_external(cfg):
        return engine.model_stats(cfg)
    from flax_cnn.model import analysis

    m = cfg.model_config()
    return {"macs": analysis.macs(m), "receptive_field": analysis.receptive_field(m)}


def _read_summary(out: Path) -> dict | None:
    try:
        return json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def _silent(*args, **kwargs) -> None:
    pass


def _hms(seconds: float) -> str:
    m, s = divmod(int(math.ceil(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"
