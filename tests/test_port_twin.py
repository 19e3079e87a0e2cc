"""port(our torch twin) is our Flax twin: same logits, same key map, same safetensors — one weight path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import parity
import torch_ref
from flax_cnn import build_model
from flax_cnn.model import weights as fw
from parity.port import port
from tests.conftest import randomize_torch_

# The project's forward tolerance: float32 logits after 13 conv+BN layers (see test_twins).
LOGIT_TOL = 1e-5


def flax_twin(cfg):
    """The Flax twin without drawing its random init (every variable is overwritten by a conversion)."""
    return nnx.eval_shape(lambda: build_model(cfg))


@pytest.fixture(scope="module")
def trio(cfg, images):
    tm = randomize_torch_(torch_ref.build_model(cfg, seed=1), seed=2)
    fm = parity.torch_to_flax(tm, flax_twin(cfg))
    return tm, fm, port(tm, torch.from_numpy(images[:1]))


def _flat(model) -> dict[tuple, np.ndarray]:
    return {tuple(p): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(model))}


def test_port_of_the_torch_twin_gives_the_flax_twins_logits(trio, images):
    tm, fm, res = trio
    fm.eval()
    res.module.eval()
    x = jnp.asarray(images.transpose(0, 2, 3, 1))
    twin = np.asarray(jax.jit(lambda m, x: m(x))(fm, x))
    ported = np.asarray(jax.jit(lambda m, x: m(x))(res.module, x))
    assert np.abs(twin).max() > 0.1
    assert np.abs(ported - twin).max() <= LOGIT_TOL


def test_derived_key_map_is_the_twins_hand_written_one(trio, cfg):
    """Same torch keys, shapes and layout changes; each pair of Flax variables holds identical values."""
    _, fm, res = trio
    derived = {m.torch_key: m for m in res.key_map}
    written = {m.torch_key: m for m in fw.key_map(cfg)}
    assert list(derived) == list(written)
    port_vars, twin_vars = _flat(res.module), _flat(fm)
    for k, m in written.items():
        d = derived[k]
        assert (d.torch_shape, d.layout) == (m.torch_shape, m.layout), k
        assert np.array_equal(port_vars[d.flax_path], twin_vars[m.flax_path]), k
    # Paths read like the torch names: features.c2.0.conv.depthwise.weight lives at
    # features/c2/0/conv/depthwise/kernel.
    assert derived["features.c2.0.conv.depthwise.weight"].flax_path == ("features", "c2", "0", "conv", "depthwise",
                                                                        "kernel")
    exported = fw.export_tensors(res.module, res.key_map)
    for k, v in fw.export_tensors(fm).items():
        assert np.array_equal(exported[k], v), k


def test_safetensors_of_a_port_load_into_the_torch_and_flax_twins(trio, cfg, tmp_path):
    tm, _, res = trio
    path = tmp_path / "ported.safetensors"
    res.save_weights(path)
    back = torch_ref.build_model(cfg, seed=5)
    torch_ref.weights.load_weights(back, path)  # strict: every key and shape checked
    for k, v in tm.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    twin = parity.load_weights(flax_twin(cfg), path)
    again = port(torch_ref.build_model(cfg, seed=7), torch.zeros(1, 3, 32, 32))
    again.load_weights(path)
    want = fw.export_tensors(twin)
    got = fw.export_tensors(again.module, again.key_map)
    assert all(np.array_equal(got[k], v) for k, v in want.items())
