"""A PNG grid: originals next to augmented versions from both paths, to eyeball the augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flax_cnn.augment.config import AugmentConfig, cutout_fill
from flax_cnn.data.cifar10 import Cifar10
from flax_cnn.data.stats import ChannelStats


def augment_both(images: np.ndarray, cfg: AugmentConfig, stats: ChannelStats, copies: int,
                 seed: int) -> dict[str, list[np.ndarray]]:
    """{"albumentations": [...], "device": [...]}, each `copies` uint8 batches augmented from `images`."""
    import jax

    from flax_cnn.augment.albumentations_cpu import AlbumentationsAugmenter
    from flax_cnn.augment.on_device import apply_params, sample_params

    albu = AlbumentationsAugmenter(cfg, stats.mean)
    fill = np.asarray(cutout_fill(stats.mean), np.float32)
    device = jax.jit(lambda key, x: apply_params(x, sample_params(key, len(images), cfg), cfg.cutout_size, fill))
    out: dict[str, list[np.ndarray]] = {"albumentations": [], "device": []}
    for k in range(copies):
        out["albumentations"].append(albu(images, [seed, k]))
        dev = device(jax.random.fold_in(jax.random.key(seed), k), images)
        out["device"].append(np.clip(np.asarray(dev), 0, 255).astype(np.uint8))  # uint8 in: already whole
    return out


def render_preview(data: Cifar10, stats: ChannelStats, out: Path, *, cfg: AugmentConfig = AugmentConfig(),
                   examples: int = 10, copies: int = 3, seed: int = 0) -> Path:
    """Write the grid to `out`: one row per example (one per class for 10), columns original + copies per path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sample = data.subset(examples)
    augmented = augment_both(sample.images, cfg, stats, copies, seed)
    columns = [("original", sample.images)] + [
        (f"{path} {k + 1}", batch) for path, batches in augmented.items() for k, batch in enumerate(batches)]
    fig, axes = plt.subplots(len(sample), len(columns), figsize=(1.25 * len(columns), 1.3 * len(sample)),
                             squeeze=False)
    for col, (title, batch) in enumerate(columns):
        for row in range(len(sample)):
            ax = axes[row, col]
            ax.imshow(batch[row], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=7)
            if col == 0:
                ax.set_ylabel(sample.class_names[sample.labels[row]], fontsize=8)
    fig.suptitle(f"CIFAR-10 {sample.split}: {sample.source}", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
