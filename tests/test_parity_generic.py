"""The suite's generic pieces, without compiling a model: error metric, weight sync, masks, kinks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flax_cnn.model.weights import key_map
from parity.suite.gradient import gradient_errors
from parity.suite.kinks import choose_batch, count_flips
from parity.suite.masks import FlaxMask, MaskBank, TorchMask
from parity.suite.pair import flax_skeleton, project_pairs
from parity.suite.results import Check, Report, elementwise_rel_err, rel_err
from parity.suite import compiled
from parity.suite.twins import ParityError, module_pairs, sync_weights
from torch_ref.macs import forward_macs
from tests.conftest import TINY


def test_rel_err_is_relative_to_the_tensors_scale():
    ref = np.array([1.0, -2.0, 1e-9])
    # 1e-9 -> 2e-9 is "100 % off" per element, but 5e-10 of the tensor's scale: harmless.
    assert rel_err(np.array([1.0, -2.0, 2e-9]), ref) == pytest.approx(5e-10)
    assert rel_err(np.array([1.0, -2.0]), ref) == math.inf  # shape mismatch
    assert rel_err(np.array([1.0, np.nan, 0.0]), ref) == math.inf
    assert rel_err(np.array([3e-7]), np.array([0.0])) == pytest.approx(3e-7)  # all-zero ref: absolute
    assert elementwise_rel_err(np.array([1.0, 2e-9]), np.array([1.0, 1e-9])) == pytest.approx(1.0)


def test_an_analytically_zero_gradient_is_measured_against_the_models_scale():
    # A conv bias before a train-mode BN: its true gradient is 0, both twins give ~1e-9 noise.
    torch_g = {"w": np.array([1.0, -2.0]), "bias": np.array([1e-9, -1e-9])}
    flax_g = {"w": np.array([1.0, -2.0 + 2e-6]), "bias": np.array([3e-9, 0.0])}
    errors = gradient_errors(torch_g, flax_g)
    assert errors["w"] == pytest.approx(1e-6)
    assert errors["bias"] == pytest.approx(2e-9 / 2.0)  # not 2.0 (its own noise scale)
    assert gradient_errors(torch_g, {"w": flax_g["w"]})["bias"] == math.inf


def test_a_nan_error_never_passes_and_a_skip_never_fails():
    assert not Check("forward", "x", math.nan, 1e-5).passed
    report = Report([Check("forward", "x", 1e-7, 1e-5), Check("accuracy", "y", math.nan, math.nan, skipped=True)])
    assert report.passed and report.failed_families() == []


def test_module_pairs_follow_the_key_map_and_unit_outputs():
    layers, drops = project_pairs(TINY)
    assert ("features.c2.0.conv.depthwise", ("features", "c2", "layers", 0, "conv", "depthwise")) in layers
    assert ("features.c1.1", ("features", "c1", "layers", 1)) in layers
    assert module_pairs(key_map(TINY))[-1] == ("fc", ("fc",))
    assert drops[0] == ("features.c1.0.drop", ("features", "c1", "layers", 0, "drop"))
    assert len(drops) == len(TINY.layers())


def test_sync_weights_names_what_the_key_map_misses():
    import torch_ref

    tm, km = torch_ref.build_model(TINY, seed=0), key_map(TINY)
    holey = [m for m in km if m.torch_key != "features.c2.1.bn.running_var"]
    with pytest.raises(ParityError, match=r"torch tensor features\.c2\.1\.bn\.running_var has no key-map entry"):
        sync_weights(tm, flax_skeleton(TINY), holey)
    fm = flax_skeleton(TINY)
    sync_weights(tm, fm, km)
    np.testing.assert_array_equal(np.asarray(fm.fc.kernel.get_value()), tm.fc.weight.detach().numpy().T)


def test_both_twins_get_the_same_dropout_mask():
    bank = MaskBank({"site": 0.5}, seed=3)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    t = TorchMask(bank, "site")(torch.from_numpy(x)).numpy()
    f = np.asarray(FlaxMask(bank, "site")(x.transpose(0, 2, 3, 1)))
    np.testing.assert_array_equal(f, t.transpose(0, 2, 3, 1))
    kept = t != 0
    assert 0.3 < kept.mean() < 0.7  # p = 0.5, 120 entries
    np.testing.assert_allclose(t[kept], 2 * x[kept])  # inverted dropout: kept entries scaled by 1/(1-p)
    assert np.all(MaskBank({"site": 0.5}, identity=True).scale_nchw("site", (2, 3)) == 1)


def test_kink_flips_count_exact_zeros_on_one_side_only():
    t = {"a": np.array([[0.0, 1.0, 0.0, 2e-7]])}
    f = {"a": np.array([[0.0, 1.0, 1e-7, 0.0]])}
    assert count_flips(t, f) == {"a": 2}
    assert count_flips(t, t) == {}


def test_kink_flips_ignore_subnormals():
    # XLA:CPU flushes subnormals to zero, torch keeps them: a dead channel is no kink flip.
    t = {"a": np.array([[1e-40, 0.0, 1.0]], dtype=np.float32)}
    f = {"a": np.array([[0.0, -1e-41, 1.0]], dtype=np.float32)}
    assert count_flips(t, f) == {}


def test_gradient_batch_prefers_no_flips_then_none_in_the_twin_under_test_then_conditioning():
    def t(i, jax, torch, err=1e-6):
        return {"batch": i, "flips": jax + torch, "jax_flips": jax, "torch_error": err}
    assert choose_batch([t(0, 1, 0), t(1, 0, 2), t(2, 0, 0)]) == 2  # neither twin flips
    assert choose_batch([t(0, 1, 0), t(1, 0, 2), t(2, 3, 1)]) == 1  # torch's flips are torch's rounding
    assert choose_batch([t(0, 1, 0, 1e-3), t(1, 2, 2, 1e-4)]) == 1  # nothing clean: the best-conditioned
    # among kink-free batches, the one where torch's own float32 gradient is closest to exact
    assert choose_batch([t(0, 0, 0, 3e-2), t(1, 0, 0, 2e-6), t(2, 0, 0, 5e-4), t(3, 1, 0, 1e-9)]) == 1


def test_a_float32_only_gradient_miss_moves_to_the_next_batch_and_a_float64_miss_does_not():
    from parity.suite.results import Check
    from parity.suite.runner import _float32_only_failure

    def c(dtype, ok):
        return Check("gradient", f"d loss / d param, 3 tensors [{dtype}]", 0.0 if ok else 1.0, 0.5, "", {})
    assert _float32_only_failure([c("float32", False), c("float64", True)])  # exact math agrees: rounding
    assert not _float32_only_failure([c("float32", False), c("float64", False)])  # a wrong port
    assert not _float32_only_failure([c("float32", True), c("float64", True)])


def test_forward_macs_counts_one_forward_and_changes_no_state():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8)).train()
    model[1].eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    assert forward_macs(model, torch.from_numpy(x).float()) == 2 * 32 * 32 * 8 * 3 * 9  # the conv's; FlopCounterMode counts no BatchNorm
    assert model[0].training and not model[1].training  # each module's own mode restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_float64_programs_compile_optimised_only_inside_the_switch():
    """Level 0 suits the small programs of a check; a full-size net's float64 convs need LLVM's optimiser."""
    f64, f32 = np.zeros(2, np.float64), np.zeros(2, np.float32)
    assert compiled._fast(f64) and compiled._fast(f32)
    with compiled.float64_optimised(True):
        assert not compiled._fast({"w": f64}, (f32,)) and compiled._fast(f32)
        with compiled.float64_optimised(False):
            assert compiled._fast(f64)
    assert compiled._fast(f64)


def test_a_channel_dropout_site_gets_one_mask_value_per_feature_map():
    bank = MaskBank({"site": 0.5}, seed=3, channels=frozenset({"site"}))
    s = bank.scale_nchw("site", (4, 8, 3, 5))
    assert np.all(s == s[:, :, :1, :1]) and 0 < (s[:, :, 0, 0] != 0).mean() < 1
    assert not np.all((e := MaskBank({"site": 0.5}, seed=3).scale_nchw("site", (4, 8, 3, 5))) == e[:, :, :1, :1])
