"""What the training augmentation does, shared by the albumentations (CPU) and the device (JAX) paths."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from flax_cnn.model.config import ConfigError

AugmentMode = Literal["albumentations", "device", "none"]
AUGMENT_MODES: tuple[AugmentMode, ...] = ("albumentations", "device", "none")
_VALIDATE_ON_INIT = contextvars.ContextVar("augment_validate_on_init", default=True)


@contextlib.contextmanager
def deferred_validation():
    """Build AugmentConfigs unchecked: a CLI parses first, then names the bad flag in one line."""
    token = _VALIDATE_ON_INIT.set(False)
    try:
        yield
    finally:
        _VALIDATE_ON_INIT.reset(token)


@dataclass(frozen=True)
class AugmentConfig:
    """The seed's augmentation: horizontal flip → shift-scale-rotate → one 16×16 cutout hole.

    Order and sampling follow albumentations 2.0.8 (HorizontalFlip, Affine, CoarseDropout), and the
    device path samples the same distributions: shifts are whole pixels, int(u·size) for u uniform
    in ±shift (Affine truncates toward zero); the scale is one factor for both axes; borders are
    reflect-101; the hole lies fully inside the image and is filled with the dataset mean.
    """

    flip_p: float = 0.5
    """probability of a horizontal flip"""
    affine_p: float = 0.5
    """probability of the shift-scale-rotate affine transform"""
    shift: float = 0.1
    """maximal shift per axis as a fraction of the image size (uniform in ±shift)"""
    scale: float = 0.1
    """maximal relative zoom (factor uniform in 1 ± scale, same for both axes)"""
    rotate_deg: float = 15.0
    """maximal rotation in degrees (uniform in ±rotate_deg)"""
    cutout_p: float = 0.5
    """probability of cutting out holes filled with the dataset mean"""
    cutout_size: int = 16
    """side of each square cutout hole in pixels"""
    cutout_holes: int = 1
    """number of cutout holes (they may overlap)"""
    fade_epochs: int = 0
    """the last N epochs fade affine_p and cutout_p linearly towards 0 (the k-th last epoch uses
    k/(N+1) of them), so training ends on images closer to the test set's; flip is not faded"""

    def __post_init__(self) -> None:
        if _VALIDATE_ON_INIT.get():
            validate(self)

    def replace(self, **changes) -> AugmentConfig:
        return dataclasses.replace(self, **changes)

    def fade_factor(self, epoch: int, epochs: int) -> float:
        """What epoch `epoch` (0-based) of an `epochs`-epoch run multiplies affine_p and cutout_p by."""
        left = epochs - epoch  # epochs left, this one included
        return 1.0 if left > self.fade_epochs else left / (self.fade_epochs + 1)

    def at_epoch(self, epoch: int, epochs: int) -> AugmentConfig:
        """The static config epoch `epoch` (0-based) of an `epochs`-epoch run uses (see fade_epochs)."""
        f = self.fade_factor(epoch, epochs)
        if f == 1.0:
            return self
        return self.replace(affine_p=self.affine_p * f, cutout_p=self.cutout_p * f)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def validate(cfg: AugmentConfig, image_size: int = 32, *, as_flags: bool = False) -> None:
    """Raise ConfigError naming the first invalid field of `cfg` (as its `--aug.*` flag with `as_flags`)."""

    def need(ok: bool, field: str, msg: str) -> None:
        if not ok:
            name = f"--aug.{field.replace('_', '-')}" if as_flags else f"AugmentConfig.{field}"
            raise ConfigError(f"{name}: {msg}, got {getattr(cfg, field)!r}")

    for p in ("flip_p", "affine_p", "cutout_p"):
        need(isinstance(getattr(cfg, p), (int, float)) and 0.0 <= getattr(cfg, p) <= 1.0, p, "must be in [0, 1]")
    need(math.isfinite(cfg.shift) and 0.0 <= cfg.shift < 1.0, "shift", "must be in [0, 1)")
    need(math.isfinite(cfg.scale) and 0.0 <= cfg.scale < 1.0, "scale", "must be in [0, 1)")
    need(math.isfinite(cfg.rotate_deg) and 0.0 <= cfg.rotate_deg <= 180.0, "rotate_deg", "must be in [0, 180]")
    need(isinstance(cfg.cutout_size, int) and 1 <= cfg.cutout_size <= image_size, "cutout_size",
         f"must be an int in [1, {image_size}]")
    need(isinstance(cfg.cutout_holes, int) and cfg.cutout_holes >= 1, "cutout_holes", "must be an int >= 1")
    need(isinstance(cfg.fade_epochs, int) and cfg.fade_epochs >= 0, "fade_epochs", "must be an int >= 0")


def cutout_fill(mean: tuple[float, ...]) -> tuple[int, ...]:
    """The hole colour on the 0-255 scale: the dataset mean rounded to uint8, as CoarseDropout stores it."""
    return tuple(int(round(255 * m)) for m in mean)
