"""Evaluate or predict with a trained run of either twin; framework-free around a `logits_fn`.

Each twin supplies `load_classifier(run, which) -> logits_fn(images NHWC float32) -> logits`
(`flax_cnn.inference.classifier`, `torch_ref.classifier`); the CLIs `python -m flax_cnn.evaluate` and
`python -m torch_ref.evaluate` (and `predict`) are this module with one or the other.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Literal

import numpy as np
import tyro

from flax_cnn.model.config import ConfigError
from flax_cnn.inference.run_dir import RunDir

LogitsFn = Callable[[np.ndarray], np.ndarray]
Loader = Callable[[RunDir, str], LogitsFn]


@dataclass(frozen=True)
class EvalConfig:
    """Evaluate a run directory (of either trainer) on the CIFAR-10 test split."""

    checkpoint: str
    """Run directory written by `flax_cnn.train` or `torch_ref.train`."""
    which: Literal["final", "best"] = "final"
    """Weights to evaluate: the last epoch's or the best test accuracy's."""
    data_dir: str | None = None
    """CIFAR-10 source (default: the run's --data-dir)."""
    test_examples: int | None = None
    """Evaluate on this many test images (default: the run's --test-examples)."""
    batch_size: int = 500
    """Evaluation batch size."""
    json: str | None = None
    """Also write the result as JSON to this file."""


def evaluate(logits_fn: LogitsFn, batches) -> tuple[float, float, np.ndarray]:
    """(mean cross-entropy, accuracy, predictions) over (images, labels, mask) batches."""
    loss_sum, correct, n, preds = 0.0, 0, 0, []
    for images, labels, mask in batches:
        logits = np.asarray(logits_fn(images[mask]), np.float64)
        y = labels[mask]
        z = logits - logits.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        loss_sum += float(-logp[np.arange(len(y)), y].sum())
        p = logits.argmax(1)
        correct += int((p == y).sum())
        n += len(y)
        preds.append(p)
    return loss_sum / n, correct / n, np.concatenate(preds)


def evaluate_run(ecfg: EvalConfig, load_classifier: Loader, evaluated_by: str) -> dict:
    from flax_cnn.data.pipeline import EvalLoader
    from flax_cnn.data.sources import load_cifar10

    run = RunDir.open(ecfg.checkpoint)
    source = ecfg.data_dir if ecfg.data_dir is not None else run.config.data_dir
    limit = ecfg.test_examples if ecfg.test_examples is not None else run.config.test_examples
    test = load_cifar10(source, "test", limit=limit)
    logits_fn = load_classifier(run, ecfg.which)
    loss, acc, preds = evaluate(logits_fn, EvalLoader(test.images, test.labels, batch_size=ecfg.batch_size,
                                                      stats=run.stats))
    return {"checkpoint": str(run.path), "weights": ecfg.which, "trained_by": run.framework(),
            "evaluated_by": evaluated_by, "test_examples": len(test), "test_loss": loss, "test_accuracy": acc,
            "predictions": preds}


def evaluate_main(load_classifier: Loader, evaluated_by: str, argv: list[str] | None, prog: str) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from flax_cnn.data.errors import DataError

    ecfg = tyro.cli(EvalConfig, args=argv, prog=prog)
    try:
        res = evaluate_run(ecfg, load_classifier, evaluated_by)
    except (ConfigError, DataError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    res.pop("predictions")
    print(f"{res['checkpoint']} ({res['weights']} weights, trained by {res['trained_by']}, evaluated by "
          f"{evaluated_by}): test accuracy {100 * res['test_accuracy']:.2f} % on {res['test_examples']} images, "
          f"loss {res['test_loss']:.4f}")
    if ecfg.json:
        Path(ecfg.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


@dataclass(frozen=True)
class PredictConfig:
    """Classify your own images (PNG/JPEG, any size) with a trained run of either trainer."""

    checkpoint: str
    """Run directory written by `flax_cnn.train` or `torch_ref.train`."""
    images: Annotated[tuple[str, ...], tyro.conf.Positional]
    """Image files."""
    which: Literal["final", "best"] = "final"
    """Weights to use."""
    top: int = 3
    """How many classes to show per image."""


def load_image(path: str, size: int = 32) -> tuple[np.ndarray, str]:
    """uint8 (size, size, 3) RGB and a note if it was converted or resized; DataError if unreadable."""
    from PIL import Image, UnidentifiedImageError

    from flax_cnn.data.errors import DataError

    try:
        with Image.open(path) as im:
            im.load()
            notes = []
            if im.mode != "RGB":
                notes.append(f"converted {im.mode} to RGB")
                im = im.convert("RGB")
            if im.size != (size, size):
                notes.append(f"resized {im.size[0]}x{im.size[1]} (WxH) to {size}x{size}")
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, np.uint8), "; ".join(notes)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: not a readable image ({e.__class__.__name__})") from None


def predict_main(load_classifier: Loader, argv: list[str] | None, prog: str) -> int:
    from flax_cnn.data.errors import DataError
    from flax_cnn.data.stats import normalize

    pcfg = tyro.cli(PredictConfig, args=argv, prog=prog)
    try:
        run = RunDir.open(pcfg.checkpoint)
        logits_fn = load_classifier(run, pcfg.which)
    except (ConfigError, DataError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    failed = 0
    size = run.model_config.input_size if run.model_config is not None else 32
    for path in pcfg.images:
        try:
            img, note = load_image(path, size)
        except DataError as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            failed += 1
            continue
        logits = np.asarray(logits_fn(normalize(img[None], run.stats)), np.float64)[0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = np.argsort(-p)[:pcfg.top]
        print(f"{path}" + (f" ({note})" if note else "") + ": "
              + ", ".join(f"{run.class_names[i]} {100 * p[i]:.1f} %" for i in top))
    return 2 if failed else 0
