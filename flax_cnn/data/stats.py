"""Per-channel mean/std of the training images (0-1 scale) and the normalisation that uses them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flax_cnn.data.errors import DataError

_CHUNK = 4096  # images per float64 pass: bounds the temporary memory to ~100 MB


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and (population) standard deviation of pixel values on the 0-1 scale."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> ChannelStats:
        return cls(tuple(d["mean"]), tuple(d["std"]))


def channel_stats(images: np.ndarray) -> ChannelStats:
    """Mean/std per channel over every pixel of uint8 NHWC `images` (compute on the train split only)."""
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise DataError(f"channel_stats needs uint8 NHWC images, got {images.dtype} {images.shape}")
    total = np.zeros(images.shape[-1])
    total_sq = np.zeros(images.shape[-1])
    for start in range(0, len(images), _CHUNK):
        x = images[start:start + _CHUNK].reshape(-1, images.shape[-1]).astype(np.float64)
        total += x.sum(0)
        total_sq += (x * x).sum(0)
    count = images.size // images.shape[-1]
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 0.0)  # exact enough: values <= 255, float64 sums
    return ChannelStats(tuple(float(m) / 255 for m in mean), tuple(float(s) / 255 for s in np.sqrt(var)))


def normalize(images: np.ndarray, stats: ChannelStats) -> np.ndarray:
    """uint8 (or 0-255 float) NHWC → float32 (x/255 - mean) / std."""
    scale = np.float32(1 / 255) / np.asarray(stats.std, dtype=np.float32)
    shift = np.asarray(stats.mean, dtype=np.float32) / np.asarray(stats.std, dtype=np.float32)
    return images.astype(np.float32) * scale - shift
