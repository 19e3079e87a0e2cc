"""`flax_cnn.model.batch_norm`'s hand-written backward against autodiff of the same forward.

In float64, so any difference beyond summation order (~1e-15 relative) is a bug in the math.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

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
