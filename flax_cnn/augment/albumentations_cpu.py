"""The CPU augmentation: the seed's pipeline in albumentations 2.x, reproducible per batch seed."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence

import numpy as np

from flax_cnn.augment.config import AugmentConfig, cutout_fill


def build_albumentations(cfg: AugmentConfig, fill: tuple[int, ...]):
    """HorizontalFlip → Affine (the successor of ShiftScaleRotate) → CoarseDropout, for uint8 RGB images.

    `strict=True` everywhere, so a misspelt or removed argument (e.g. 1.x's `max_holes`) is an
    error instead of a warning and a silent default.
    """
    import albumentations as A  # ~2-4 s to import; only this path needs it
    import cv2

    return A.Compose([
        A.HorizontalFlip(p=cfg.flip_p, strict=True),
        A.Affine(
            translate_percent=(-cfg.shift, cfg.shift),
            scale=(1 - cfg.scale, 1 + cfg.scale),
            keep_ratio=True,  # one zoom factor for both axes, as ShiftScaleRotate in albumentations 1.x
            rotate=(-cfg.rotate_deg, cfg.rotate_deg),
            interpolation=cv2.INTER_LINEAR,
            border_mode=cv2.BORDER_REFLECT_101,  # ShiftScaleRotate's 1.x default (2.x's is constant 0)
            p=cfg.affine_p,
            strict=True,
        ),
        A.CoarseDropout(
            num_holes_range=(cfg.cutout_holes, cfg.cutout_holes),
            hole_height_range=(cfg.cutout_size, cfg.cutout_size),
            hole_width_range=(cfg.cutout_size, cfg.cutout_size),
            fill=fill,
            p=cfg.cutout_p,
            strict=True,
        ),
    ], strict=True)


class AlbumentationsAugmenter:
    """Augments a uint8 NHWC batch; the result is a pure function of (images, seed).

    The transforms share one numpy Generator and one random.Random, re-created from the seed
    for each batch. (`Compose.set_random_seed` would give every transform its own stream with the
    same seed, so flip and affine would be decided by the same draw for the first image.)
    The Compose is built on first use, so this object pickles cheaply into grain's workers; a lock
    keeps two threads (grain's prefetch thread and a direct call) from sharing its random state.
    """

    def __init__(self, cfg: AugmentConfig, mean: tuple[float, ...]):
        self.cfg = cfg
        self.fill = cutout_fill(mean)
        self._compose = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"cfg": self.cfg, "fill": self.fill}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _compose=None, _lock=threading.Lock())

    def __call__(self, images: np.ndarray, seed: int | Sequence[int]) -> np.ndarray:
        np_seq, py_seq = np.random.SeedSequence(seed).spawn(2)
        py_random = random.Random(int(py_seq.generate_state(1, np.uint64)[0]))
        out = np.empty_like(images)
        with self._lock:
            if self._compose is None:
                self._compose = build_albumentations(self.cfg, self.fill)
            self._compose.set_random_state(np.random.default_rng(np_seq), py_random)
            for i, image in enumerate(images):
                out[i] = self._compose(image=image)["image"]
        return out
