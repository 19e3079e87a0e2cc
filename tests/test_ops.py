"""`flax_cnn.model.ops`' formulations ("cpu_tuned": hand-written convs and backward passes; "xla": XLA's
native convolution) against `lax.conv_general_dilated` and each other, forced on whatever backend runs.

In float64, so any difference beyond summation order (~1e-15 relative) is a bug in the math.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from flax_cnn.model import ops

# (case, input NHWC, kernel HWIO, stride, dilation, padding, groups): every dispatch branch of ops.conv2d
CASES = [
    ("depthwise", (2, 8, 8, 4), (3, 3, 1, 4), 1, 1, 1, 4),
    ("depthwise-stride2-odd", (2, 9, 9, 4), (3, 3, 1, 4), 2, 1, 1, 4),
    ("depthwise-dilated", (2, 8, 8, 4), (3, 3, 1, 4), 1, 2, 2, 4),
    ("strided-dense", (2, 8, 8, 3), (3, 3, 3, 5), 2, 1, 1, 1),
    ("strided-dense-dilated-odd", (2, 9, 9, 3), (3, 3, 3, 5), 2, 2, 2, 1),
    ("strided-dense-k5-stride3", (2, 11, 11, 3), (5, 5, 3, 4), 3, 1, 2, 1),
    ("strided-dense-no-padding", (2, 8, 8, 3), (3, 3, 3, 5), 2, 1, 0, 1),
    ("strided-pointwise", (2, 8, 8, 3), (1, 1, 3, 4), 2, 1, 0, 1),
    ("dense-dilated", (2, 8, 8, 3), (3, 3, 3, 5), 1, 2, 2, 1),
    ("dense", (2, 8, 8, 3), (3, 3, 3, 5), 1, 1, 1, 1),
    ("pointwise", (2, 8, 8, 4), (1, 1, 4, 6), 1, 1, 0, 1),
    ("grouped", (2, 8, 8, 4), (3, 3, 2, 6), 1, 1, 1, 2),
]


@pytest.mark.parametrize("form", list(ops.FORMULATIONS))
@pytest.mark.parametrize("name,xs,ws,stride,dilation,padding,groups", CASES, ids=[c[0] for c in CASES])
def test_value_and_gradients_match_xla_convolution(form, name, xs, ws, stride, dilation, padding, groups):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x, w = jnp.asarray(rng.standard_normal(xs)), jnp.asarray(rng.standard_normal(ws))

        def reference(x, w):
            return lax.conv_general_dilated(x, w, (stride, stride), ((padding, padding), (padding, padding)),
                                            rhs_dilation=(dilation, dilation), feature_group_count=groups,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

        def ours(x, w):
            return ops.conv2d(x, w, stride=stride, dilation=dilation, padding=padding, groups=groups)

        y_ref, vjp_ref = jax.vjp(reference, x, w)
        g = jnp.asarray(rng.standard_normal(y_ref.shape))
        with ops.formulation(form):
            y, vjp = jax.vjp(ours, x, w)
            grads = vjp(g)
        assert y.shape == y_ref.shape and y.dtype == jnp.float64
        for a, b in [(y, y_ref), *zip(grads, vjp_ref(g))]:
            assert float(jnp.abs(a - b).max() / jnp.abs(b).max()) < 1e-13


def _grad_hlo(form: str, xs, ws, **conv) -> str:
    """The optimised HLO of the conv's input and weight gradients, traced under `form`."""
    def loss(x, w):
        return (ops.conv2d(jax.nn.relu(x * 2.0), w, **conv) ** 2).sum()

    with ops.formulation(form):
        return jax.jit(jax.grad(loss, argnums=(0, 1))).lower(jnp.ones(xs), jnp.ones(ws)).compile().as_text()


def test_xla_formulation_is_xlas_own_convolution():
    """xla: depthwise through `feature_group_count`, no opaque identity; cpu_tuned: no grouped conv."""
    xla = _grad_hlo("xla", (2, 8, 8, 4), (3, 3, 1, 4), padding=1, groups=4)
    tuned = _grad_hlo("cpu_tuned", (2, 8, 8, 4), (3, 3, 1, 4), padding=1, groups=4)
    assert "feature_group_count=4" in xla and "feature_group_count" not in tuned
    assert "conditional(" not in _grad_hlo("xla", (2, 8, 8, 4), (3, 3, 4, 5), padding=1)


def test_default_formulation_follows_the_backend_and_the_environment(monkeypatch):
    monkeypatch.delenv(ops.ENV, raising=False)
    assert ops.active_formulation() == ("cpu_tuned" if jax.default_backend() == "cpu" else "xla")
    with ops.formulation("xla"):
        assert ops.active_formulation() == "xla"
    monkeypatch.setenv(ops.ENV, "xla")
    assert ops.active_formulation() == "xla"
    monkeypatch.setenv(ops.ENV, "cudnn")
    with pytest.raises(ValueError, match="cpu_tuned"):
        ops.active_formulation()


def test_pinned_keeps_the_formulation_of_its_creation_for_a_later_trace():
    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 1, 4))
    with ops.formulation("xla"):
        f = jax.jit(ops.pinned(lambda x, w: ops.conv2d(x, w, padding=1, groups=4)))
    with ops.formulation("cpu_tuned"):
        assert "feature_group_count = 4" in f.lower(x, w).as_text()


def test_dense_conv_backward_reads_the_stored_input_on_cpu():
    """The opaque identity survives XLA's simplifier: without it the backward recomputes BN+ReLU in a transpose."""
    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 5))

    def loss(x, w):
        return ops.conv2d(jax.nn.relu(x * 2.0), w, padding=1).sum()

    with ops.formulation("cpu_tuned"):
        hlo = jax.jit(jax.grad(loss, argnums=1)).lower(x, w).compile().as_text()
    assert ("conditional(" in hlo) == (jax.default_backend() == "cpu")


@pytest.mark.parametrize("name,xs,ws,stride,dilation,padding,groups", CASES, ids=[c[0] for c in CASES])
def test_gradients_under_an_explicitly_sharded_batch(name, xs, ws, stride, dilation, padding, groups):
    """Multi-process meshes come from `jax.make_mesh`, whose axes are Explicit: every op needs a sharding rule."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    mesh = jax.make_mesh((len(jax.devices()),), ("data",))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((len(jax.devices()), *xs[1:])).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)

    def loss(x, w):
        return (ops.conv2d(x, w, stride=stride, dilation=dilation, padding=padding, groups=groups) ** 2).sum()

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    sharded = grad(jax.device_put(x, NamedSharding(mesh, P("data"))), jax.device_put(w, NamedSharding(mesh, P())))
    for a, b in zip(sharded, grad(x, w)):
        # the weight gradient sums the batch across devices, in another order: float32 rounding
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)
