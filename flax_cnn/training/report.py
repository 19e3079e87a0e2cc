"""Run artefacts shared by both trainers: metrics.jsonl, plots, the final summary table.

Framework-free (numpy + matplotlib with the Agg backend), so both twins write identical files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

METRIC_FIELDS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr",
                 "epoch_seconds", "images_per_second")


def write_metrics(path: Path, history: list[dict]) -> None:
    """Rewrite metrics.jsonl from the full history (one JSON object per epoch)."""
    from flax_cnn.runtime.faults import writing

    tmp = path.with_suffix(".tmp")
    with writing(path, partial=tmp):  # a full disk: one line, the previous metrics.jsonl stays
        tmp.write_text("".join(json.dumps(row) + "\n" for row in history))
        tmp.replace(path)


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train and test."""
    plt = _pyplot()
    ep = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [r["train_loss"] for r in history], "o-", label="train")
    a.plot(ep, [r["test_loss"] for r in history], "o-", label="test")
    a.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    b.plot(ep, [100 * r["train_accuracy"] for r in history], "o-", label="train")
    b.plot(ep, [100 * r["test_accuracy"] for r in history], "o-", label="test")
    best = max(history, key=lambda r: r["test_accuracy"])
    b.axhline(100 * best["test_accuracy"], color="gray", lw=0.8, ls="--")
    b.set(xlabel="epoch", ylabel="accuracy (%)", title=f"accuracy (best test {100 * best['test_accuracy']:.2f} %)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(labels * n + preds, minlength=n * n).reshape(n, n)


def plot_confusion(labels: np.ndarray, preds: np.ndarray, class_names: list[str], path: Path) -> None:
    """Row-normalised confusion matrix with counts."""
    plt = _pyplot()
    n = len(class_names)
    cm = confusion_matrix(labels, preds, n)
    frac = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=f"test confusion (accuracy {100 * np.trace(cm) / cm.sum():.2f} %)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_misclassified(images: np.ndarray, labels: np.ndarray, preds: np.ndarray, class_names: list[str],
                       path: Path, n: int = 32) -> None:
    """A grid of the first `n` misclassified test images (uint8 NHWC), titled true → predicted."""
    plt = _pyplot()
    wrong = np.flatnonzero(labels != preds)[:n]
    cols = 8
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.4, rows * 1.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(images[i])
        ax.set_title(f"{class_names[labels[i]]}\n→ {class_names[preds[i]]}", fontsize=7)
    fig.suptitle(f"misclassified test images (true → predicted), {int((labels != preds).sum())} in all", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_table(items: list[tuple[str, str]]) -> str:
    """A two-column box table for the end of a run."""
    w = max(len(k) for k, _ in items)
    v = max(len(x) for _, x in items)
    rule = "+" + "-" * (w + 2) + "+" + "-" * (v + 2) + "+"
    return "\n".join([rule] + [f"| {k:<{w}} | {x:>{v}} |" for k, x in items] + [rule])


class TensorBoard:
    """Optional TensorBoard event files (tensorboardX: no TensorFlow needed)."""

    def __init__(self, logdir: Path | None):
        self.writer = None
        if logdir is not None:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(logdir))

    def scalars(self, row: dict, step: int) -> None:
        if self.writer is None:
            return
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)):
                self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
