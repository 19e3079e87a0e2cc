"""The albumentations and the device (JAX) augmentation: API-correct, and the same distributions.

Parameters are read back from synthetic images: a "coordinate image" (R = 8·x, G = 8·y, float32
so no rounding hides sub-pixel detail; both paths take float images) turns any warp into a map of
source coordinates, because bilinear interpolation reproduces a linear function exactly.
Tolerances are 4 standard errors of the statistic (binomial for rates, σ/√n for means,
0.45·σ/√n for the std of a uniform sample), so a seed change keeps them passing.
"""

from __future__ import annotations

import functools

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_cnn.model.config import ConfigError
from flax_cnn.augment.albumentations_cpu import AlbumentationsAugmenter, build_albumentations
from flax_cnn.augment.config import AugmentConfig, cutout_fill
from flax_cnn.augment.on_device import _warp_one, affine_matrix, apply_params, make_device_augment, sample_params
from flax_cnn.data.stats import ChannelStats

STATS = ChannelStats((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
FILL = cutout_fill(STATS.mean)
OFF = AugmentConfig(flip_p=0.0, affine_p=0.0, cutout_p=0.0)
N = 1600
CENTRE = 15.5


def _4se_rate(p: float, n: int) -> float:
    return 4 * np.sqrt(p * (1 - p) / n)


def albumentations_batch(image: np.ndarray, cfg: AugmentConfig, n: int = N, seed: int = 0) -> np.ndarray:
    return AlbumentationsAugmenter(cfg, STATS.mean)(np.repeat(image[None], n, 0), [seed]).astype(np.float32)


@functools.partial(jax.jit, static_argnums=(2,))
def _device(key, images, cfg):
    params = sample_params(key, images.shape[0], cfg)
    return apply_params(images, params, cfg.cutout_size, np.asarray(FILL, np.float32)), params


def device_batch(image: np.ndarray, cfg: AugmentConfig, n: int = N, seed: int = 0):
    out, params = _device(jax.random.key(seed), jnp.asarray(np.repeat(image[None], n, 0)), cfg)
    return np.asarray(out), jax.tree.map(np.asarray, params)


# Readback precision: JAX and OpenCV 5 interpolate in float; OpenCV 4 rounds source positions to
# 1/32 px, which moves a 12-px least-squares fit by at most these amounts.
TOL = {"angle": 0.2, "scale": 0.005, "shift": 0.05}


def coordinate_image() -> np.ndarray:
    y, x = np.mgrid[0:32, 0:32]
    return np.stack([8 * x, 8 * y, np.full_like(x, 128)], -1).astype(np.float32)


def read_geometry(batch: np.ndarray) -> dict[str, np.ndarray]:
    """Flip, angle, scale and shift of each warped coordinate image, by least squares on the centre.

    The central 12×12 pixels always sample inside the image (|offset| ≤ 5.5√2 px, shift ≤ 3√2 px,
    scale ≥ 0.9 → ≤ 13.4 px from the centre), so borders never enter the fit.
    """
    rows, cols = np.mgrid[10:22, 10:22]
    p = np.stack([cols.ravel(), rows.ravel(), np.ones(rows.size)], 1)          # output pixel (x, y, 1)
    src = batch[:, rows.ravel(), cols.ravel(), :2] / 8.0                         # (N, 144, 2) source (x, y)
    inv = np.einsum("kp,npj->njk", np.linalg.pinv(p), src)                      # (N, 2, 3): output → source
    flip = np.linalg.det(inv[:, :, :2]) < 0
    unflip = np.array([[-1.0, 0, 31], [0, 1, 0], [0, 0, 1]])
    inv3 = np.concatenate([inv, np.broadcast_to([[0.0, 0, 1]], (len(batch), 1, 3))], 1)
    inv3 = np.where(flip[:, None, None], unflip @ inv3, inv3)
    m = np.linalg.inv(inv3)
    lin = m[:, :2, :2]
    shift = lin @ np.array([CENTRE, CENTRE]) + m[:, :2, 2] - CENTRE
    return {"flip": flip, "angle": np.degrees(np.arctan2(lin[:, 0, 1], lin[:, 0, 0])),
            "scale": np.sqrt(np.linalg.det(lin)), "tx": shift[:, 0], "ty": shift[:, 1]}


def is_warped(g: dict[str, np.ndarray]) -> np.ndarray:
    # a drawn transform within the readback tolerance of the identity has probability < 1e-4
    return (np.abs(g["angle"]) > TOL["angle"]) | (np.abs(g["scale"] - 1) > TOL["scale"]) | \
        (np.abs(g["tx"]) + np.abs(g["ty"]) > 0.5)


# --- configuration ------------------------------------------------------------------------------


def test_defaults_are_the_seed():
    cfg = AugmentConfig()
    assert (cfg.flip_p, cfg.affine_p, cfg.cutout_p) == (0.5, 0.5, 0.5)
    assert (cfg.shift, cfg.scale, cfg.rotate_deg, cfg.cutout_size, cfg.cutout_holes) == (0.1, 0.1, 15.0, 16, 1)


@pytest.mark.parametrize("change, field", [
    (dict(flip_p=1.5), "flip_p"), (dict(affine_p=-0.1), "affine_p"), (dict(shift=1.0), "shift"),
    (dict(scale=-0.1), "scale"), (dict(rotate_deg=200.0), "rotate_deg"), (dict(cutout_size=33), "cutout_size"),
    (dict(cutout_holes=0), "cutout_holes"), (dict(cutout_size=16.0), "cutout_size"),
])
def test_invalid_config_names_the_field(change, field):
    with pytest.raises(ConfigError, match=f"AugmentConfig.{field}: "):
        AugmentConfig(**change)


def test_albumentations_pipeline_is_api_correct():
    import albumentations as A

    compose = build_albumentations(AugmentConfig(), FILL)
    flip, affine, cutout = compose.transforms
    assert compose.strict and all(t.invalid_args == [] for t in compose.transforms)
    assert isinstance(flip, A.HorizontalFlip) and flip.p == 0.5
    assert isinstance(affine, A.Affine) and affine.p == 0.5
    assert affine.translate_percent == {"x": (-0.1, 0.1), "y": (-0.1, 0.1)}
    assert affine.scale == {"x": (0.9, 1.1), "y": (0.9, 1.1)} and affine.keep_ratio
    assert affine.rotate == (-15.0, 15.0) and affine.shear == {"x": (0.0, 0.0), "y": (0.0, 0.0)}
    assert affine.border_mode == cv2.BORDER_REFLECT_101 and affine.interpolation == cv2.INTER_LINEAR
    assert isinstance(cutout, A.CoarseDropout) and cutout.p == 0.5
    assert cutout.num_holes_range == (1, 1)
    assert cutout.hole_height_range == (16, 16) and cutout.hole_width_range == (16, 16)
    assert cutout.fill == (125, 123, 114) == FILL
    with pytest.raises(ValueError, match="max_holes"):  # what strict=True buys: 1.x names are errors
        A.CoarseDropout(max_holes=1, strict=True)


# --- the device path's building blocks match albumentations / OpenCV ----------------------------


def test_affine_matrix_is_albumentations():
    from albumentations.augmentations.geometric import functional as fg

    rng = np.random.default_rng(0)
    for _ in range(20):
        angle, scale, tx, ty = rng.uniform(-30, 30), rng.uniform(0.8, 1.2), *rng.integers(-5, 6, 2)
        ref = fg.create_affine_transformation_matrix({"x": tx, "y": ty}, {"x": 0.0, "y": 0.0},
                                                     {"x": scale, "y": scale}, angle, fg.center((32, 32)))
        np.testing.assert_allclose(affine_matrix(angle, scale, tx, ty, 32, 32), ref, atol=2e-5)  # float32


def test_warp_matches_opencv_reflect101_bilinear():
    from albumentations.augmentations.geometric import functional as fg

    y, x = np.mgrid[0:32, 0:32]
    image = np.stack([128 + 100 * np.sin(x / 5 + y / 7), 128 + 100 * np.cos(x / 4 - y / 6),
                      128 + 60 * np.sin((x + y) / 3)], -1).round().astype(np.uint8)
    rng = np.random.default_rng(1)
    n = 60
    angle, scale = rng.uniform(-15, 15, n), rng.uniform(0.9, 1.1, n)
    tx, ty, flip = rng.integers(-3, 4, n), rng.integers(-3, 4, n), rng.random(n) < 0.5
    warp = jax.jit(jax.vmap(_warp_one, in_axes=(None, 0, 0, 0, 0, 0)))
    out = np.round(np.asarray(warp(jnp.asarray(image, jnp.float32), flip, angle.astype(np.float32),
                                   scale.astype(np.float32), tx.astype(np.float32), ty.astype(np.float32))))
    for i in range(n):
        m = fg.create_affine_transformation_matrix({"x": int(tx[i]), "y": int(ty[i])}, {"x": 0.0, "y": 0.0},
                                                   {"x": scale[i], "y": scale[i]}, angle[i], fg.center((32, 32)))
        src = np.ascontiguousarray(image[:, ::-1]) if flip[i] else image
        ref = cv2.warpAffine(src, m[:2], (32, 32), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        # OpenCV rounds a fixed-point (≤ 1/32 px) interpolation to uint8; gradients here are ≤ 25 levels/px,
        # so the two differ by a rounding tie, at most 1-2 levels, on few pixels.
        diff = np.abs(out[i] - ref)
        assert diff.max() <= 2 and diff.mean() < 0.05, (i, diff.max(), diff.mean())


# --- the two paths sample the same distributions ------------------------------------------------

GEOMETRY = OFF.replace(flip_p=0.5, affine_p=0.5)


@pytest.fixture(scope="module")
def geometry():
    """{path: (outputs, read-back geometry)} for N coordinate images through flip + affine."""
    albu = albumentations_batch(coordinate_image(), GEOMETRY)
    device, params = device_batch(coordinate_image(), GEOMETRY)
    return {"albumentations": (albu, read_geometry(albu)), "device": (device, read_geometry(device)),
            "device params": params}


def test_readback_recovers_the_drawn_parameters(geometry):
    g, params = geometry["device"][1], geometry["device params"]
    np.testing.assert_array_equal(g["flip"], params.flip)
    np.testing.assert_array_equal(is_warped(g), params.affine)
    np.testing.assert_allclose(g["angle"], params.angle_deg, atol=1e-3)  # float32 all the way
    np.testing.assert_allclose(g["scale"], params.scale, atol=1e-5)
    np.testing.assert_allclose(g["tx"], params.tx, atol=1e-4)
    np.testing.assert_allclose(g["ty"], params.ty, atol=1e-4)


@pytest.mark.parametrize("path", ["albumentations", "device"])
def test_flip_and_affine_rates_are_independent(geometry, path):
    out, g = geometry[path]
    flip, warped = g["flip"], is_warped(g)
    for rate, p in ((flip.mean(), 0.5), (warped.mean(), 0.5), ((flip & warped).mean(), 0.25)):
        assert abs(rate - p) < _4se_rate(p, N), (rate, p)
    image = coordinate_image()
    plain = out[~warped]  # a flip alone moves whole pixels: exact
    np.testing.assert_array_equal(plain[flip[~warped]], np.broadcast_to(image[:, ::-1], plain[flip[~warped]].shape))
    np.testing.assert_array_equal(plain[~flip[~warped]], np.broadcast_to(image, plain[~flip[~warped]].shape))


def test_albumentations_decisions_are_independent_within_an_image():
    # Batches of one image: with Compose.set_random_seed every transform would get the same
    # stream, and flip and affine would always come together (P(both) = 0.5 instead of 0.25).
    augmenter = AlbumentationsAugmenter(GEOMETRY, STATS.mean)
    n = 800
    g = read_geometry(np.concatenate([augmenter(coordinate_image()[None], [7, i]) for i in range(n)]))
    assert abs((g["flip"] & is_warped(g)).mean() - 0.25) < _4se_rate(0.25, n)


@pytest.mark.parametrize("path", ["albumentations", "device"])
def test_affine_parameter_distributions(geometry, path):
    g = {k: v[is_warped(geometry[path][1])] for k, v in geometry[path][1].items()}
    n = len(g["angle"])
    uniform_sd = 1 / np.sqrt(12)  # σ of U(0, 1)
    for name, lo, hi in (("angle", -15.0, 15.0), ("scale", 0.9, 1.1)):
        v, width = g[name], hi - lo
        assert lo - TOL[name] <= v.min() < lo + 0.02 * width and hi - 0.02 * width < v.max() <= hi + TOL[name]
        assert abs(v.mean() - (lo + hi) / 2) < 4 * width * uniform_sd / np.sqrt(n), name
        assert abs(v.std() - width * uniform_sd) < 4 * 0.45 * width * uniform_sd / np.sqrt(n), name
    # whole pixels: int(u · 32) for u ~ U(-0.1, 0.1), truncated toward zero (as Affine does)
    shift_pmf = {-3: 0.2 / 6.4, -2: 1 / 6.4, -1: 1 / 6.4, 0: 2 / 6.4, 1: 1 / 6.4, 2: 1 / 6.4, 3: 0.2 / 6.4}
    for axis in ("tx", "ty"):
        shifts = np.round(g[axis])
        assert np.abs(g[axis] - shifts).max() < TOL["shift"]
        assert set(shifts) == set(shift_pmf)
        for value, p in shift_pmf.items():
            assert abs((shifts == value).mean() - p) < _4se_rate(p, n), (axis, value)


@pytest.mark.parametrize("holes", [1, 2])
def test_cutout_holes(holes):
    cfg = OFF.replace(cutout_p=0.5, cutout_holes=holes)
    image = np.full((32, 32, 3), 7, np.uint8)
    for out in (albumentations_batch(image, cfg), device_batch(image, cfg)[0]):
        filled = (out == np.asarray(FILL, np.float32)).all(-1)
        assert np.all(filled | (out == 7).all(-1))            # every pixel is the image or the mean fill
        area = filled.sum(axis=(1, 2))
        hit = area > 0
        assert abs(hit.mean() - 0.5) < _4se_rate(0.5, N)
        if holes == 1:
            assert set(area[hit]) == {256}
            rows, cols = filled[hit].any(2), filled[hit].any(1)
            for corner in (rows.argmax(1), cols.argmax(1)):  # top row / left column of the hole
                # uniform on 0..16: the hole lies fully inside the image
                assert corner.min() == 0 and corner.max() == 16
                assert abs(corner.mean() - 8) < 4 * np.sqrt((17**2 - 1) / 12) / np.sqrt(len(corner))
            assert np.all(rows.sum(1) == 16) and np.all(cols.sum(1) == 16)
        else:  # two holes of 256 px, overlapping unless drawn at the same place (p = 1/289)
            assert area[hit].min() >= 256 and area.max() <= 512 and (area[hit] > 256).mean() > 0.98


def test_device_fade_follows_the_step_as_the_albumentations_epochs_do():
    cfg = AugmentConfig(fade_epochs=2)
    faded = make_device_augment(cfg, STATS, epochs=4, steps_per_epoch=3)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8))
    key = jax.random.key(5)
    for step in range(12):
        static = make_device_augment(cfg.at_epoch(step // 3, 4).replace(fade_epochs=0), STATS)
        np.testing.assert_array_equal(faded(key, images, jnp.int32(step)), static(key, images))
    assert not np.array_equal(faded(key, images, jnp.int32(11)), faded(key, images, jnp.int32(0)))
    with pytest.raises(ValueError, match="epochs and steps_per_epoch are needed"):
        make_device_augment(cfg, STATS)


def test_device_augment_normalises_what_sample_and_apply_params_give(geometry):
    augment = make_device_augment(GEOMETRY, STATS)
    images = jnp.asarray(np.repeat(coordinate_image()[None], N, 0))
    out = augment(jax.random.key(0), images)  # the key device_batch used for the geometry fixture
    assert out.dtype == jnp.float32 and out.shape == images.shape
    back = (np.asarray(out) * STATS.std + STATS.mean) * 255
    # float32 normalise and back: ~1e-4 levels, far below the readback tolerances
    np.testing.assert_allclose(back, geometry["device"][0], atol=2e-3)
    np.testing.assert_array_equal(out, augment(jax.random.key(0), images))
    assert not np.array_equal(out, augment(jax.random.key(1), images))
    few = jnp.asarray(np.random.default_rng(2).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
    plain = make_device_augment(OFF, STATS)(jax.random.key(3), few)  # nothing drawn: normalisation only
    np.testing.assert_allclose(plain, (np.asarray(few) / 255 - STATS.mean) / STATS.std, atol=1e-5)
