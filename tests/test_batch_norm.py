"""`flax_cnn.model.batch_norm`'s hand-written backward against autodiff of the same forward.

In float64, so any difference beyond summation order (~1e-15 relative) is a bug in the math.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flax_cnn.model.batch_norm import batch_norm_train


def _autodiff_reference(x, scale, bias, eps):
    mean = x.mean((0, 1, 2))
    var = ((x - mean) ** 2).mean((0, 1, 2))
    return (x - mean) / jnp.sqrt(var + eps) * scale + bias, mean, var


def test_value_and_gradients_match_autodiff_in_float64():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        # A mean far from zero (3) is where a one-pass variance would lose digits.
        x = jnp.asarray(rng.standard_normal((4, 5, 6, 3)) * 2.0 + 3.0)
        scale, bias = jnp.asarray(rng.uniform(0.5, 1.5, 3)), jnp.asarray(rng.standard_normal(3))
        out_ref, vjp_ref = jax.vjp(lambda *a: _autodiff_reference(*a, 1e-5), x, scale, bias)
        out, vjp = jax.vjp(lambda *a: batch_norm_train(*a, 1e-5), x, scale, bias)
        # Nonzero cotangents for the statistics too: a loss on them must differentiate correctly.
        cts = tuple(jnp.asarray(rng.standard_normal(o.shape)) for o in out_ref)
        for a, b in [*zip(out, out_ref), *zip(vjp(cts), vjp_ref(cts))]:
            assert a.dtype == jnp.float64 and a.shape == b.shape
            assert float(jnp.abs(a - b).max() / jnp.abs(b).max()) < 1e-13


def test_gradients_keep_the_parameter_dtype():
    """float32 parameters under float64 activations (the parity suite's float64 runs) get float32 gradients."""
    with jax.enable_x64(True):
        x = jnp.linspace(-1.0, 2.0, 2 * 3 * 3 * 2).reshape(2, 3, 3, 2)
        scale, bias = jnp.ones(2, jnp.float32), jnp.zeros(2, jnp.float32)
        grads = jax.grad(lambda x, s, b: batch_norm_train(x, s, b, 1e-5)[0].sum() ** 2, argnums=(0, 1, 2))(x, scale, bias)
        assert [g.dtype for g in grads] == [jnp.float64, jnp.float32, jnp.float32]


@pytest.mark.parametrize("affine", [True, False])
def test_ported_batchnorm_uses_it_and_matches_torch_in_float64(affine):
    """parity.port's BatchNorm2d (what emitted model.py files hold) trains through `batch_norm_train`:
    output, input gradient and running statistics equal torch's nn.BatchNorm2d to float64 rounding."""
    import torch

    from parity.port.runtime import BatchNorm2d

    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5, 2)) * 2.0 + 1.0  # NHWC
    g = rng.standard_normal(x.shape)
    tb = torch.nn.BatchNorm2d(2, momentum=0.3, eps=1e-3, affine=affine).double().train()
    if affine:
        with torch.no_grad():
            tb.weight.copy_(torch.tensor([0.7, 1.3], dtype=torch.float64))
            tb.bias.copy_(torch.tensor([0.2, -0.5], dtype=torch.float64))
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = tb(xt)
    yt.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    with jax.enable_x64(True):
        fb = BatchNorm2d(2, momentum=0.3, eps=1e-3, affine=affine)
        nnx.update(fb, jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, nnx.state(fb)))
        if affine:
            fb.scale.set_value(jnp.asarray([0.7, 1.3])); fb.bias.set_value(jnp.asarray([0.2, -0.5]))
        graph, state = nnx.split(fb)  # the gradient on a copy: a Variable may not change under jax.vjp's trace
        _, vjp = jax.vjp(lambda a, st: nnx.merge(graph, st)(a), jnp.asarray(x), state)
        dx = vjp(jnp.asarray(g))[0]
        y = fb(jnp.asarray(x))
        for ours, ref in [(y, yt.detach().numpy().transpose(0, 2, 3, 1)),
                          (dx, xt.grad.numpy().transpose(0, 2, 3, 1)),
                          (fb.mean.get_value(), tb.running_mean.numpy()), (fb.var.get_value(), tb.running_var.numpy())]:
            assert np.abs(np.asarray(ours) - ref).max() < 1e-12 * max(1.0, np.abs(ref).max())
    assert "batch_norm_train(" in inspect.getsource(BatchNorm2d.__call__)
