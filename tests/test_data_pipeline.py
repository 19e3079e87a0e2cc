"""The training/eval loaders: a batch is a pure function of (seed, epoch, step), whatever the workers or resumes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from flax_cnn.model.config import ConfigError
from flax_cnn.data import ChannelStats, DataError, EvalLoader, TrainLoader, channel_stats, normalize
from flax_cnn.augment.config import AugmentConfig
from flax_cnn.data.pipeline import BatchMaker

STATS = ChannelStats((0.5, 0.4, 0.3), (0.25, 0.2, 0.3))
RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
IDS = np.arange(50)  # labels that name the example, so batches can be traced back


def loader(**kw) -> TrainLoader:
    args = dict(batch_size=16, seed=1, augment="none", stats=STATS)
    return TrainLoader(IMAGES, IDS, **{**args, **kw})


def epoch_batches(lo: TrainLoader, epoch: int, start: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(lo.epoch(epoch, start))


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_steps_shapes_and_dtypes():
    lo = loader()
    assert lo.steps_per_epoch == 3  # 50 // 16, the last 2 examples dropped
    batches = epoch_batches(lo, 0)
    assert [x.shape for x, _ in batches] == [(16, 32, 32, 3)] * 3
    assert all(x.dtype == np.float32 and y.dtype == np.int32 for x, y in batches)
    short = loader(drop_remainder=False)
    assert short.steps_per_epoch == 4 and [len(y) for _, y in epoch_batches(short, 0)] == [16, 16, 16, 2]


def test_each_epoch_is_a_fresh_permutation_from_seed_and_epoch():
    lo = loader(drop_remainder=False)
    orders = [np.concatenate([y for _, y in epoch_batches(lo, e)]) for e in range(3)]
    assert all(sorted(o) == list(range(50)) for o in orders)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    again = np.concatenate([y for _, y in epoch_batches(loader(drop_remainder=False), 1)])
    np.testing.assert_array_equal(again, orders[1])
    other_seed = np.concatenate([y for _, y in epoch_batches(loader(drop_remainder=False, seed=2), 1)])
    assert not np.array_equal(other_seed, orders[1])


def test_none_normalises_and_device_passes_raw_uint8():
    for x, y in epoch_batches(loader(), 0):
        np.testing.assert_allclose(x, (IMAGES[y] / 255 - np.array(STATS.mean)) / np.array(STATS.std), atol=1e-5)
    for x, y in epoch_batches(loader(augment="device"), 0):
        assert x.dtype == np.uint8
        np.testing.assert_array_equal(x, IMAGES[y])


def test_albumentations_batches_are_augmented_and_normalised():
    lo = loader(augment="albumentations")
    x, y = lo.batch(0, 0)
    assert x.dtype == np.float32
    plain = normalize(IMAGES[y], STATS)
    changed = ~np.isclose(x, plain, atol=1e-5).all(axis=(1, 2, 3))
    # P(an image is untouched) = 0.5³: 16 images leave none changed with probability 0.875¹⁶ ≈ 0.12
    assert changed.sum() >= 8


def test_batch_is_a_pure_function_of_seed_epoch_step():
    lo = loader(augment="albumentations")
    full = epoch_batches(lo, 2)
    assert_same(full, [lo.batch(2, s) for s in range(3)])
    assert_same(full[1:], epoch_batches(loader(augment="albumentations"), 2, start=1))
    assert_same(full, epoch_batches(lo, 2))  # again, after the live iterator moved on


def test_fade_scales_affine_and_cutout_over_the_last_epochs():
    cfg = AugmentConfig(fade_epochs=3)
    assert [cfg.at_epoch(e, 10).affine_p for e in range(10)] == [0.5] * 7 + [0.375, 0.25, 0.125]
    assert [cfg.at_epoch(e, 10).cutout_p for e in (6, 9)] == [0.5, 0.125]
    assert {cfg.at_epoch(e, 10).flip_p for e in range(10)} == {0.5} and AugmentConfig().at_epoch(9, 10) == AugmentConfig()


def test_a_faded_epoch_augments_as_its_static_config_does():
    faded = loader(augment="albumentations", augment_config=AugmentConfig(fade_epochs=2), epochs=4)
    for epoch, p in ((1, 0.5), (2, 1 / 3), (3, 0.5 / 3)):
        static = loader(augment="albumentations", augment_config=AugmentConfig(affine_p=p, cutout_p=p))
        assert_same([faded.batch(epoch, s) for s in range(3)], [static.batch(epoch, s) for s in range(3)])
    assert not np.array_equal(faded.batch(3, 0)[0], loader(augment="albumentations").batch(3, 0)[0])
    with pytest.raises(ConfigError, match="TrainLoader.epochs: is needed to fade"):
        loader(augment="albumentations", augment_config=AugmentConfig(fade_epochs=2))


def test_resume_mid_epoch_from_a_json_state_sees_the_same_batches():
    reference = loader(augment="albumentations", drop_remainder=False)
    expect = epoch_batches(reference, 0) + epoch_batches(reference, 1)

    run = loader(augment="albumentations", drop_remainder=False)
    seen = epoch_batches(run, 0)
    it = run.epoch(1)
    seen += [next(it), next(it)]
    state = json.loads(json.dumps(it.get_state()))  # what the trainer checkpoints
    run.close()
    assert state == {"seed": 1, "epoch": 1, "step": 2, "batch_size": 16, "steps_per_epoch": 4}

    resumed = loader(augment="albumentations", drop_remainder=False)  # a new process, as after a kill
    seen += list(resumed.resume(state))
    assert_same(seen, expect)
    it.set_state({**state, "step": 0})
    assert_same(list(it), expect[4:])


def test_resume_refuses_a_state_of_another_loader():
    state = loader().epoch(0).get_state()
    with pytest.raises(DataError, match="loader state: batch_size is 16 but this loader has 8"):
        loader(batch_size=8).resume(state)


def test_two_workers_interleave_batches_in_step_order():
    main = loader(augment="device")
    expect = epoch_batches(main, 0) + epoch_batches(main, 1)
    with loader(augment="device", workers=2) as two:
        got = epoch_batches(two, 0, start=1) + epoch_batches(two, 1)  # two epochs, one live iterator
    assert_same(got, expect[1:])


def test_a_worker_process_augments_exactly_as_the_main_process():
    # augment="albumentations" in a worker costs an import of albumentations (and torch) there,
    # so one worker is enough to show nothing process-local enters a batch
    main = loader(augment="albumentations")
    expect = epoch_batches(main, 0)
    with loader(augment="albumentations", workers=1) as one:
        assert_same(epoch_batches(one, 0), expect)


def test_workers_zero_runs_in_the_main_process(monkeypatch):
    pids = []
    original = BatchMaker.__call__
    monkeypatch.setattr(BatchMaker, "__call__", lambda self, g: pids.append(os.getpid()) or original(self, g))
    epoch_batches(loader(), 0)
    assert pids and set(pids) == {os.getpid()}


@pytest.mark.parametrize("kw, match", [
    (dict(batch_size=0), "TrainLoader.batch_size: must be >= 1"),
    (dict(batch_size=51), "TrainLoader.batch_size: is larger than the 50 examples"),
    (dict(augment="cutmix"), "TrainLoader.augment: must be one of albumentations, device, none"),
    (dict(workers=-1), "TrainLoader.workers: must be >= 0"),
    (dict(seed=-3), "TrainLoader.seed: must be >= 0"),
])
def test_bad_loader_arguments(kw, match):
    with pytest.raises(ConfigError, match=match):
        loader(**kw)


def test_bad_arrays_and_positions():
    with pytest.raises(DataError, match="TrainLoader: images must be a uint8 NHWC array"):
        TrainLoader(IMAGES.astype(np.float32), IDS, batch_size=4, seed=0, stats=STATS)
    with pytest.raises(DataError, match="TrainLoader: 50 images but labels have shape"):
        TrainLoader(IMAGES, IDS[:3], batch_size=4, seed=0, stats=STATS)
    with pytest.raises(DataError, match="loader position: epoch 0, step 4"):
        loader().epoch(0, 4)


def test_eval_loader_pads_the_last_batch_with_a_mask():
    ev = EvalLoader(IMAGES[:10], IDS[:10], batch_size=4, stats=STATS)
    batches = list(ev)
    assert len(ev) == len(batches) == 3
    assert all(x.shape == (4, 32, 32, 3) and x.dtype == np.float32 for x, _, _ in batches)
    np.testing.assert_array_equal(np.concatenate([y for _, y, _ in batches]), [*range(10), 0, 0])
    np.testing.assert_array_equal(np.concatenate([m for _, _, m in batches]), [True] * 10 + [False] * 2)
    x, _, _ = batches[-1]
    np.testing.assert_allclose(x[:2], normalize(IMAGES[8:10], STATS))
    assert not x[2:].any()
    assert_same([b[:2] for b in batches], [b[:2] for b in ev])  # fixed order


def test_channel_stats_exact_on_known_pixels():
    images = np.zeros((4, 32, 32, 3), np.uint8)
    images[:2, :, :, 0] = 255          # R: half 0, half 255 → mean 0.5, std 0.5
    images[:, :, :, 1] = 51            # G: constant 0.2 → std 0
    images[:, :16, :, 2] = 102         # B: half 0.4, half 0 → mean 0.2, std 0.2
    stats = channel_stats(images)
    np.testing.assert_allclose(stats.mean, (0.5, 0.2, 0.2), atol=1e-12)
    np.testing.assert_allclose(stats.std, (0.5, 0.0, 0.2), atol=1e-7)  # sqrt of a float64 difference
    assert ChannelStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
