"""The on-device augmentation in JAX: the albumentations path's distributions, jit-able over a batch.

Flip → affine (bilinear, reflect-101 borders, the Affine matrix of albumentations 2.0.8) → cutout
holes of the rounded dataset mean → normalise. Each image gets independent parameters drawn from
one PRNG key; `sample_params` and `apply_params` are separate so tests can read parameters back.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flax_cnn.augment.config import AugmentConfig, cutout_fill
from flax_cnn.data.stats import ChannelStats


class AugmentParams(NamedTuple):
    """Per-image parameters, leading axis N. An image whose affine is off has angle 0, scale 1, shift 0."""

    flip: jax.Array      # bool (N,)
    affine: jax.Array    # bool (N,)
    angle_deg: jax.Array  # float32 (N,)
    scale: jax.Array     # float32 (N,)
    tx: jax.Array        # int32 (N,) whole pixels, + = right
    ty: jax.Array        # int32 (N,) whole pixels, + = down
    cutout: jax.Array    # bool (N,)
    hole_y: jax.Array    # int32 (N, holes) top row of each hole
    hole_x: jax.Array    # int32 (N, holes) left column of each hole


def sample_params(key: jax.Array, n: int, cfg: AugmentConfig, height: int = 32, width: int = 32,
                  fade=1.0) -> AugmentParams:
    """Draw the parameters of `n` images as albumentations does (see AugmentConfig); `fade` (a
    traced scalar allowed) multiplies affine_p and cutout_p as `AugmentConfig.at_epoch` does."""
    k = jax.random.split(key, 9)
    affine = jax.random.bernoulli(k[1], cfg.affine_p * fade, (n,))
    angle = jax.random.uniform(k[2], (n,), minval=-cfg.rotate_deg, maxval=cfg.rotate_deg)
    scale = jax.random.uniform(k[3], (n,), minval=1 - cfg.scale, maxval=1 + cfg.scale)
    # Affine: int(u * size) for u ~ U(-shift, shift), i.e. truncation toward zero.
    tx = jnp.trunc(jax.random.uniform(k[4], (n,), minval=-cfg.shift, maxval=cfg.shift) * width)
    ty = jnp.trunc(jax.random.uniform(k[5], (n,), minval=-cfg.shift, maxval=cfg.shift) * height)
    holes = (n, cfg.cutout_holes)
    return AugmentParams(
        flip=jax.random.bernoulli(k[0], cfg.flip_p, (n,)),
        affine=affine,
        angle_deg=jnp.where(affine, angle, 0.0),
        scale=jnp.where(affine, scale, 1.0),
        tx=jnp.where(affine, tx, 0.0).astype(jnp.int32),
        ty=jnp.where(affine, ty, 0.0).astype(jnp.int32),
        cutout=jax.random.bernoulli(k[6], cfg.cutout_p * fade, (n,)),
        hole_y=jax.random.randint(k[7], holes, 0, height - cfg.cutout_size + 1),
        hole_x=jax.random.randint(k[8], holes, 0, width - cfg.cutout_size + 1),
    )


def affine_matrix(angle_deg, scale, tx, ty, height: int, width: int) -> jax.Array:
    """The forward 3×3 matrix (source → output pixel) that albumentations' Affine builds (no shear)."""
    a = jnp.deg2rad(jnp.asarray(angle_deg, jnp.float32))
    c, s = jnp.cos(a), jnp.sin(a)
    cx, cy = width / 2 - 0.5, height / 2 - 0.5
    # centre + shift + R·S·(p - centre), R = [[cos, sin], [-sin, cos]] as in albumentations
    return jnp.array([
        [scale * c, scale * s, cx + tx - scale * (c * cx + s * cy)],
        [-scale * s, scale * c, cy + ty - scale * (-s * cx + c * cy)],
        [0.0, 0.0, 1.0],
    ], dtype=jnp.float32)


def reflect101(i: jax.Array, n: int) -> jax.Array:
    """OpenCV's BORDER_REFLECT_101 for integer indices: … 2 1 | 0 1 … n-1 | n-2 n-3 …"""
    if n == 1:
        return jnp.zeros_like(i)
    period = 2 * (n - 1)
    i = jnp.mod(i, period)
    return jnp.where(i >= n, period - i, i)


def _warp_one(image: jax.Array, flip, angle_deg, scale, tx, ty) -> jax.Array:
    """Flip then affine-warp one (H, W, C) float image: bilinear samples at the inverse-mapped points."""
    h, w = image.shape[:2]
    cx, cy = w / 2 - 0.5, h / 2 - 0.5
    y, x = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    a = jnp.deg2rad(angle_deg)
    c, s = jnp.cos(a), jnp.sin(a)
    dx, dy = x - cx - tx, y - cy - ty
    sx = cx + (c * dx - s * dy) / scale
    sy = cy + (s * dx + c * dy) / scale
    sx = jnp.where(flip, (w - 1) - sx, sx)  # the flip comes first, so it acts on the source point
    x0, y0 = jnp.floor(sx), jnp.floor(sy)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    xs = (reflect101(x0, w), reflect101(x0 + 1, w))
    ys = (reflect101(y0, h), reflect101(y0 + 1, h))
    top = image[ys[0], xs[0]] * (1 - fx) + image[ys[0], xs[1]] * fx
    bottom = image[ys[1], xs[0]] * (1 - fx) + image[ys[1], xs[1]] * fx
    return top * (1 - fy) + bottom * fy


def apply_params(images: jax.Array, params: AugmentParams, cutout_size: int, fill) -> jax.Array:
    """Augment an NHWC batch (uint8, or float on the 0-255 scale) → float32 on the 0-255 scale.

    uint8 input is rounded after the warp, as OpenCV's uint8 warp does.
    """
    x = images.astype(jnp.float32)
    x = jax.vmap(_warp_one)(x, params.flip, params.angle_deg, params.scale,
                            params.tx.astype(jnp.float32), params.ty.astype(jnp.float32))
    if images.dtype == jnp.uint8:
        x = jnp.round(x)
    h, w = x.shape[1:3]
    rows = jnp.arange(h)[None, None, :, None]
    cols = jnp.arange(w)[None, None, None, :]
    hy, hx = params.hole_y[..., None, None], params.hole_x[..., None, None]
    in_hole = ((rows >= hy) & (rows < hy + cutout_size) & (cols >= hx) & (cols < hx + cutout_size)).any(axis=1)
    in_hole = in_hole & params.cutout[:, None, None]
    return jnp.where(in_hole[..., None], jnp.asarray(fill, jnp.float32), x)


def normalize(images: jax.Array, stats: ChannelStats) -> jax.Array:
    """0-255 values → float32 (x/255 - mean) / std, on device."""
    mean = jnp.asarray(stats.mean, jnp.float32)
    std = jnp.asarray(stats.std, jnp.float32)
    return (images.astype(jnp.float32) / 255.0 - mean) / std


def make_device_augment(cfg: AugmentConfig, stats: ChannelStats, *, epochs: int | None = None,
                        steps_per_epoch: int | None = None):
    """A jitted `augment(key, images, step=0) -> normalised float32 NHWC`; call it inside the train
    step. With `cfg.fade_epochs`, `step` (traced) picks its epoch's fade, as the albumentations path's."""
    fill = np.asarray(cutout_fill(stats.mean), np.float32)
    if cfg.fade_epochs and not (epochs and steps_per_epoch):
        raise ValueError("make_device_augment: epochs and steps_per_epoch are needed to fade (cfg.fade_epochs)")

    per_epoch = jnp.asarray([cfg.fade_factor(e, epochs) for e in range(epochs)] if cfg.fade_epochs else [1.0],
                            jnp.float32)

    def fade(step):
        return per_epoch[step // steps_per_epoch] if cfg.fade_epochs else 1.0

    @jax.jit
    def augment(key: jax.Array, images: jax.Array, step=0) -> jax.Array:
        n, h, w = images.shape[:3]
        params = sample_params(key, n, cfg, h, w, fade=fade(step))
        return normalize(apply_params(images, params, cfg.cutout_size, fill), stats)

    return augment
