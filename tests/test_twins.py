"""The two twins are the same model: conversion both ways, logits, shapes, params, RF."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import parity
import torch_ref
from flax_cnn import ModelConfig, build_model, param_count, receptive_field
from flax_cnn.model.analysis import layer_rows
from flax_cnn.model.config import BlockSpec, ConvSpec
from flax_cnn.model.cnn import num_params
from flax_cnn.model.weights import WeightsError, key_map
from tests.conftest import randomize_torch_

# float32 logits after ~13 layers of convs and BN: summation-order differences between XLA and
# ATen are ~1e-7 relative per layer; 1e-5 absolute on O(1) logits leaves 10x headroom.
LOGIT_TOL = 1e-5


@pytest.fixture(scope="session")
def twins(cfg):
    tm = randomize_torch_(torch_ref.build_model(cfg, seed=1), seed=2)
    fm = parity.torch_to_flax(tm, build_model(cfg, seed=3))
    return tm, fm


def _torch_logits(tm, x_nchw):
    with torch.no_grad():
        return tm(torch.from_numpy(x_nchw)).numpy()


def _flax_logits(fm, x_nchw):
    return np.asarray(fm(x_nchw.transpose(0, 2, 3, 1)))


def test_eval_logits_match_after_torch_to_flax(twins, images):
    tm, fm = twins
    tm.eval(); fm.eval()
    t, f = _torch_logits(tm, images), _flax_logits(fm, images)
    assert np.abs(t).max() > 0.1, "logits too small to make the comparison meaningful"
    assert np.abs(t - f).max() <= LOGIT_TOL


def test_flax_to_torch_round_trip_reproduces_torch_logits(twins, cfg, images):
    tm, fm = twins
    back = parity.flax_to_torch(fm, torch_ref.build_model(cfg, seed=9))
    tm.eval(); back.eval()
    assert np.abs(_torch_logits(tm, images) - _torch_logits(back, images)).max() <= 1e-6
    for k, v in tm.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k


def test_train_mode_forward_matches_with_dropout_off(cfg, images):
    tm = randomize_torch_(torch_ref.build_model(cfg, seed=4), seed=5)
    fm = parity.torch_to_flax(tm, build_model(cfg))
    tm.train(); fm.train()
    t = tm(torch.from_numpy(images)).detach().numpy()
    f = _flax_logits(fm, images)
    assert np.abs(t - f).max() <= LOGIT_TOL
    # BN momentum 0.1 (torch) == 0.9 (flax) and the unbiased running-variance update:
    # the running statistics after the step must agree too (rel 1e-6: one float32 update).
    sd = tm.state_dict()
    from flax_cnn.model.weights import export_tensors
    for k, v in export_tensors(fm).items():
        if "running" in k:
            np.testing.assert_allclose(v, sd[k].numpy(), rtol=1e-6, atol=1e-7, err_msg=k)
        if "num_batches_tracked" in k:
            assert int(v) == int(sd[k]) == 8


def test_params_identical_and_below_budget(cfg, twins):
    tm, fm = twins
    n_torch = sum(p.numel() for p in tm.parameters())
    assert num_params(fm) == n_torch == param_count(cfg) < 200_000


def _torch_layer_numbers(tm, size):
    """Output shape, params and MACs per torch module, measured with forward hooks."""
    found = {}

    def hook(name):
        def f(mod, inp, out):
            params = sum(p.numel() for p in mod.parameters(recurse=False))
            if isinstance(mod, torch.nn.Linear):
                (c, h, w), mac = (out.shape[1], 1, 1), mod.in_features * mod.out_features
            else:
                c, h, w = out.shape[1:]
                k = mod.kernel_size[0] * mod.kernel_size[1] if isinstance(mod, torch.nn.Conv2d) else 0
                mac = h * w * c * (mod.in_channels // mod.groups) * k if k else 0
            found[name] = ((h, w, c), params, mac)
        return f

    for name, mod in tm.named_modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear)):
            mod.register_forward_hook(hook(name))
    tm.eval()
    with torch.no_grad():
        tm(torch.zeros(1, 3, size, size))
    return found


def test_summary_numbers_agree_with_both_twins(cfg):
    tm = torch_ref.build_model(cfg)
    measured = _torch_layer_numbers(tm, cfg.input_size)
    rows = [r for r in layer_rows(cfg) if r.kind != "GlobalAvgPool"]
    assert [r.name for r in rows] == list(measured)
    for r in rows:
        assert (r.out_shape, r.params, r.macs) == measured[r.name], r.name
    # Flax: every row's params equal the sizes of the Flax variables the key map assigns to it.
    from flax import nnx
    flat = {tuple(p): v for p, v in nnx.to_flat_state(nnx.state(build_model(cfg), nnx.Param))}
    per_row = {}
    for m in key_map(cfg):
        if m.flax_path in flat:
            row = m.torch_key.rsplit(".", 1)[0]
            per_row[row] = per_row.get(row, 0) + flat[m.flax_path].get_value().size
    assert per_row == {r.name: r.params for r in rows}


def _measured_rf(cfg: ModelConfig, size: int) -> int:
    """Extent of the input gradient of one centre feature of `features` (torch twin)."""
    tm = torch_ref.build_model(cfg, seed=0).double().eval()  # train-mode BN would couple all pixels
    x = torch.randn(1, cfg.in_channels, size, size, dtype=torch.float64, requires_grad=True)
    f = tm.features(x)
    h, w = f.shape[2:]
    f[0, :, h // 2, w // 2].sum().backward()
    nz = np.nonzero(np.abs(x.grad[0].numpy()).sum(0))
    return int(max(nz[0].max() - nz[0].min(), nz[1].max() - nz[1].min()) + 1)


def test_receptive_field_matches_gradient_extent(cfg):
    rf = receptive_field(cfg)
    assert rf > 44
    assert _measured_rf(cfg, 2 * rf + 32) == rf


def test_receptive_field_of_a_small_dilated_config():
    cfg = ModelConfig(blocks=(BlockSpec("a", (ConvSpec(8), ConvSpec(8, stride=2), ConvSpec(8, dilation=3),
                                              ConvSpec(8, separable=True, kernel_size=5))),))
    assert receptive_field(cfg) == 1 + 2 + 2 + 2 * 3 * 2 + 4 * 2
    assert _measured_rf(cfg, 64) == receptive_field(cfg)


def test_converting_between_different_configs_names_key_and_shapes(cfg):
    other = cfg.replace(blocks=(BlockSpec("c1", (ConvSpec(40),)),) + cfg.blocks[1:])
    with pytest.raises(WeightsError, match=r"features\.c1\.0\.conv\.weight.*\(32, 3, 3, 3\).*\(40, 3, 3, 3\)"):
        parity.torch_to_flax(torch_ref.build_model(cfg), build_model(other))
    with pytest.raises(WeightsError, match=r"features\.c1\.0\.conv\.weight.*\(32, 3, 3, 3\).*\(40, 3, 3, 3\)"):
        parity.flax_to_torch(build_model(cfg), torch_ref.build_model(other))


def test_missing_and_extra_keys_are_named(cfg, tmp_path):
    from flax_cnn.model.weights import import_tensors
    tm = torch_ref.build_model(cfg)
    sd = {k: v.numpy() for k, v in tm.state_dict().items()}
    missing = dict(sd); del missing["features.c3.1.bn.running_var"]
    with pytest.raises(WeightsError, match=r"missing key features\.c3\.1\.bn\.running_var"):
        import_tensors(build_model(cfg), missing)
    extra = dict(sd, **{"head.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(WeightsError, match=r"unexpected key head\.weight \(shape \(2, 2\)\)"):
        import_tensors(build_model(cfg), extra)


def test_safetensors_written_by_either_twin_load_in_the_other(twins, cfg, images, tmp_path):
    tm, fm = twins
    parity.save_weights(tm, tmp_path / "t.safetensors")
    parity.save_weights(fm, tmp_path / "f.safetensors")
    f2 = parity.load_weights(build_model(cfg, seed=7), tmp_path / "t.safetensors")
    t2 = parity.load_weights(torch_ref.build_model(cfg), tmp_path / "f.safetensors")
    tm.eval(); f2.eval(); t2.eval()
    ref = _torch_logits(tm, images)
    assert np.abs(_flax_logits(f2, images) - ref).max() <= LOGIT_TOL
    assert np.abs(_torch_logits(t2, images) - ref).max() <= 1e-6


def test_same_padding_trap_is_real():
    """XLA 'SAME' pads a stride-2 3x3 conv on 32x32 by (0, 1); torch pads (1, 1). We use (1, 1)."""
    import jax.numpy as jnp
    from flax import nnx
    from jax import lax

    from flax_cnn.model import ops
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 32, 32, 2)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).standard_normal((3, 3, 2, 4)), jnp.float32)
    ours = ops.conv2d(x, w, stride=2, padding=1)
    same = lax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    conv = torch.nn.Conv2d(2, 4, 3, 2, 1, bias=False)
    conv.weight.data = torch.from_numpy(np.asarray(w).transpose(3, 2, 0, 1).copy())
    ref = conv(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())).detach().numpy().transpose(0, 2, 3, 1)
    assert np.abs(np.asarray(ours) - ref).max() < 1e-5
    assert np.abs(np.asarray(same) - ref).max() > 1e-2


def test_channel_dropout_drops_whole_feature_maps_in_both_twins(cfg):
    """--dropout-kind channel: one draw per (sample, channel), kept maps scaled by 1/(1-p), as nn.Dropout2d."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    ch = cfg.replace(dropout=0.5, dropout_kind="channel")
    tm, fm = torch_ref.build_model(ch, seed=0), build_model(ch, seed=0)
    assert all(isinstance(m.drop, torch.nn.Dropout2d) for m in tm.modules() if hasattr(m, "drop"))
    drops = [m.drop for _, m in nnx.iter_modules(fm) if hasattr(m, "drop")]
    assert drops and all(d.channel for d in drops)
    assert not any(isinstance(m, torch.nn.Dropout2d) for m in torch_ref.build_model(cfg.replace(dropout=0.5)).modules())
    torch.manual_seed(0)
    t = tm.features[0][0].drop.train()(torch.ones(8, 16, 4, 4)).numpy().transpose(0, 2, 3, 1)
    f = np.asarray(drops[0](jnp.ones((8, 4, 4, 16)), jax.random.key(0)))
    for y in (t, f):  # NHWC
        assert np.all(y == y[:, :1, :1, :]) and set(np.unique(y)) <= {0.0, 2.0}
        assert 0.3 < (y[:, 0, 0, :] != 0).mean() < 0.7  # p = 0.5 over 128 maps


def test_residual_shortcuts_sit_where_shapes_match_and_twins_agree(cfg, images):
    """--model with residual: x + drop(act(bn(conv(x)))) in both twins, only where input and output shapes match."""
    res = cfg.replace(residual=True, dropout=0.0)
    names = [f"{b}.{i}" for (b, i, _), s in zip(res.layers(), res.shortcuts()) if s]
    assert names == ["c2.1", "c3.0", "c3.1", "c4.0", "c4.2"]  # stride 1, same channels, in WIDE_BLOCKS
    assert param_count(res) == param_count(cfg) and receptive_field(res) == receptive_field(cfg)
    tm = randomize_torch_(torch_ref.build_model(res, seed=1), seed=2)
    fm = parity.torch_to_flax(tm, build_model(res, seed=3))
    for mode in ("train", "eval"):
        getattr(tm, mode)(); getattr(fm, mode)()
        t, f = tm(torch.from_numpy(images)).detach().numpy(), _flax_logits(fm, images)
        assert np.abs(t - f).max() <= LOGIT_TOL, mode
        plain = torch_ref.build_model(cfg.replace(dropout=0.0))
        plain.load_state_dict(tm.state_dict())
        getattr(plain, mode)()
        assert np.abs(t - plain(torch.from_numpy(images)).detach().numpy()).max() > 1e-2, "shortcut inert"


def test_zero_init_residual_starts_shortcut_layers_as_identity(cfg, images):
    from flax_cnn.model.config import ConfigError

    with pytest.raises(ConfigError, match="zero_init_residual"):
        cfg.replace(zero_init_residual=True)
    res = cfg.replace(residual=True, zero_init_residual=True, dropout=0.0)
    tm, fm = torch_ref.build_model(res, seed=0), build_model(res, seed=0)
    tm.eval(); fm.eval()
    x = torch.randn(2, 96, 16, 16)
    assert torch.equal(tm.features.c2[1](x), x)
    assert float(tm.features.c2[1].bn.weight.detach().abs().sum()) == 0.0 < float(tm.features.c2[0].bn.weight.detach().sum())
    assert float(fm.features.c2.layers[1].bn.scale.get_value().sum()) == 0.0
    assert float(fm.features.c2.layers[0].bn.scale.get_value().sum()) == 96.0
