"""Each supported layer and op, alone or in a small graph, against torch (eager JAX: no compiles).

One case per trap: 'same' padding of an even kernel, F.pad before a conv, rectangular kernels,
pooling's ceil_mode and divisors, NCHW dims in cat/mean/flatten/view, in-place activations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from parity.port import port

# One or two layers in float32: summation-order differences only (~1e-7 relative).
TOL = 1e-5


class Seq(nn.Sequential):
    """nn.Sequential whose parameters are drawn from a fixed seed."""


class Fn(nn.Module):
    """A module whose forward is a lambda over named children (for functional-op cases)."""

    def __init__(self, fn, **children):
        super().__init__()
        self.fn = fn
        for k, v in children.items():
            setattr(self, k, v)

    def forward(self, x):
        return self.fn(self, x)


class InplaceAlias(nn.Module):
    """`self.relu(y)` with inplace=True overwrites y: torch's `y + z` is 2·relu(y), not y + relu(y)."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.bn(x)
        z = self.relu(y)
        return y + z


def _case(name, make, shape=(2, 3, 9, 9)):
    """A single layer is ported inside an nn.Sequential (its children get torch names '0', '1', …)."""
    return pytest.param(lambda: nn.Sequential(make()), shape, id=name)


CASES = [
    _case("conv-bias-stride2-pad1", lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1)),
    _case("conv-same-even-kernel-dilated", lambda: nn.Conv2d(3, 4, 4, padding="same", dilation=2, bias=False)),
    _case("conv-valid", lambda: nn.Conv2d(3, 4, 3, padding="valid")),
    _case("conv-rectangular", lambda: nn.Conv2d(3, 4, (1, 3), stride=(2, 1), padding=(0, 1))),
    _case("conv-groups2", lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2), (2, 4, 8, 8)),
    _case("conv-depthwise-bias-s2-d2", lambda: nn.Conv2d(4, 4, 3, stride=2, padding=2, dilation=2, groups=4),
          (2, 4, 9, 9)),
    _case("conv-depthwise-multiplier", lambda: nn.Conv2d(3, 6, 3, padding=1, groups=3)),
    _case("F.pad-asymmetric-then-conv", lambda: Fn(lambda m, x: m.conv(F.pad(x, (0, 1, 1, 2))),
                                                   conv=nn.Conv2d(3, 4, 3, stride=2))),
    _case("F.pad-crop-and-value", lambda: Fn(lambda m, x: F.pad(x, (-1, 2, 1, 0), value=0.5))),
    _case("maxpool-ceil-pad", lambda: nn.MaxPool2d(3, 2, padding=1, ceil_mode=True), (2, 3, 8, 8)),
    _case("maxpool-dilated-F", lambda: Fn(lambda m, x: F.max_pool2d(x, 2, 1, 0, 2))),
    _case("avgpool-ceil-include-pad", lambda: nn.AvgPool2d(3, 2, padding=1, ceil_mode=True), (2, 3, 8, 8)),
    _case("avgpool-ceil-exclude-pad", lambda: nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),
          (2, 3, 8, 8)),
    _case("avgpool-divisor-override", lambda: nn.AvgPool2d(2, divisor_override=3), (2, 3, 8, 8)),
    _case("adaptive-avg-divides", lambda: nn.AdaptiveAvgPool2d((2, 4)), (2, 3, 8, 8)),
    _case("adaptive-avg-general", lambda: nn.AdaptiveAvgPool2d(3), (2, 3, 8, 8)),
    _case("F.adaptive_avg_pool2d-1", lambda: Fn(lambda m, x: F.adaptive_avg_pool2d(x, 1))),
    _case("activations-modules", lambda: nn.Sequential(nn.LeakyReLU(0.2), nn.Hardswish(), nn.GELU(), nn.SiLU(),
                                                       nn.ReLU6(), nn.Tanh(), nn.Hardsigmoid(), nn.Sigmoid())),
    _case("activations-functional", lambda: Fn(lambda m, x: torch.sigmoid(F.gelu(F.leaky_relu(F.hardswish(
        F.silu(x)), 0.3), approximate="tanh")) + F.relu6(x * 4) - torch.tanh(x).relu())),
    _case("bn-affine-false", lambda: nn.BatchNorm2d(3, affine=False, momentum=0.3, eps=1e-3)),
    _case("linear-no-bias-on-4d", lambda: nn.Linear(9, 5, bias=False)),
    _case("flatten-linear-trap", lambda: nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.Flatten(), nn.Linear(64, 5))),
    _case("view-size-linear-trap", lambda: Fn(lambda m, x: m.fc(m.conv(x).view(x.size(0), -1)),
                                              conv=nn.Conv2d(3, 2, 3, stride=2), fc=nn.Linear(32, 5))),
    _case("cat-channels-and-width", lambda: Fn(lambda m, x: torch.cat([torch.cat([x, m.conv(x)], 1),
                                                                       torch.cat([m.conv(x), x], 1)], 3),
                                               conv=nn.Conv2d(3, 4, 3, padding=1))),
    _case("mean-keepdim-and-channel", lambda: Fn(lambda m, x: x.mean((2, 3), keepdim=True) * x + x.mean(1)[:, None]
                                                 .sum(dim=-1, keepdim=True))),
    _case("mean-chain-torch-order", lambda: Fn(lambda m, x: x.mean(-1).mean(-1) + x.sum(3)[:, :, 0])),
    _case("flatten2-permute-transpose", lambda: Fn(lambda m, x: x.flatten(2).transpose(1, 2).reshape(
        x.shape[0], -1) + x.permute(0, 2, 3, 1).contiguous().view(x.size(0), -1))),
    _case("slice-softmax-mul-div", lambda: Fn(lambda m, x: F.softmax(x[:, 1:, ::2] * 2.0 / (x[:, :2, ::2] + 3.0),
                                                                     dim=1))),
    _case("se-gate-4d-broadcast", lambda: Fn(lambda m, x: x * torch.sigmoid(m.fc(F.adaptive_avg_pool2d(x, 1))),
                                             fc=nn.Conv2d(3, 3, 1))),
    _case("inplace-relu-alias", InplaceAlias),
    _case("identity-dropout-eval", lambda: nn.Sequential(nn.Identity(), nn.Dropout(0.5))),
]


def randomize_bn_(model: nn.Module, seed: int) -> nn.Module:
    """Random BN statistics and (if affine) weight and bias, so eval mode is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                if m.affine:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.4 - 0.2)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
    return model


def _torch_nhwc(out: torch.Tensor) -> np.ndarray:
    a = out.detach().numpy()
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


@pytest.mark.parametrize("make,shape", CASES)
def test_op_matches_torch_in_eval_and_train_mode(make, shape):
    torch.manual_seed(0)
    tm = randomize_bn_(make(), seed=1)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2))
    res = port(tm, x)
    xn = jnp.asarray(x.numpy().transpose(0, 2, 3, 1).copy())
    for train in (False, True):
        tm.train(train)
        res.module.train() if train else res.module.eval()
        if train:
            for m in tm.modules():
                if isinstance(m, nn.Dropout):
                    m.p = 0.0
            for _, m in __import__("flax").nnx.iter_modules(res.module):
                if hasattr(m, "rate"):
                    m.rate = 0.0
        with torch.no_grad():
            ref = _torch_nhwc(tm(x.clone()))
        out = np.asarray(res.module(xn))
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() <= TOL * max(1.0, np.abs(ref).max()), f"train={train}"


class Pools(nn.Module):
    """Pooling with padding and ceil_mode between convs: the gradients route through torch's windows."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.pool1 = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.conv2 = nn.Conv2d(4, 4, 3, padding="same")
        self.pool2 = nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False)
        self.fc = nn.Linear(4 * 4 * 4, 3)  # 10 → 6 → 4: both pools keep a ceil_mode window

    def forward(self, x):
        out = self.pool2(F.relu(self.conv2(self.pool1(self.conv1(x)))))
        return self.fc(torch.flatten(out, 1))


def test_gradients_through_pooling_padding_and_flatten():
    torch.manual_seed(0)
    tm = Pools()
    x = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(1))
    res = port(tm, x)
    tm(x).square().sum().backward()
    from flax import nnx

    grads = nnx.grad(lambda m: jnp.sum(jnp.square(m(jnp.asarray(x.numpy().transpose(0, 2, 3, 1).copy())))))(res.module)
    flat = {tuple(p): v.get_value() for p, v in nnx.to_flat_state(grads)}
    for m in res.key_map:
        g = tm.get_parameter(m.torch_key).grad.numpy()
        f = m.to_torch(np.asarray(flat[m.flax_path]))
        assert np.abs(f - g).max() <= TOL * np.abs(g).max(), m.torch_key


def test_shape_queries_follow_torch_dim_order():
    """x.size(1) / x.shape[1] are channels in torch; the ported value is NHWC, the answer must not be H."""
    tm = Fn(lambda m, x: x.view(x.size(0), x.shape[1], -1).mean(-1) * x.size(1))
    x = torch.randn(2, 3, 4, 5)
    res = port(tm, x)
    out = np.asarray(res.module(jnp.asarray(x.numpy().transpose(0, 2, 3, 1).copy())))
    np.testing.assert_allclose(out, tm(x).numpy(), rtol=1e-6, atol=1e-6)


def test_functional_dropout_follows_the_ported_modules_mode():
    tm = Fn(lambda m, x: F.dropout(x, 0.5, training=m.training))
    x = torch.ones(2, 3, 4, 4)
    res = port(tm, x)
    xn = jnp.ones((2, 4, 4, 3))
    res.module.eval()
    assert np.array_equal(np.asarray(res.module(xn)), np.ones((2, 4, 4, 3)))
    res.module.train()
    out = np.asarray(res.module(xn, key=jax.random.key(0)))
    assert set(np.unique(out)) <= {0.0, 2.0} and 0 < (out == 0).mean() < 1
    with pytest.raises(ValueError, match="needs a PRNG key"):
        res.module(xn)


def test_hardsigmoid_backward_is_torchs_even_in_float64():
    """torch's hardsigmoid backward multiplies by 1/6 rounded to float32 in every dtype, so the exact
    derivative is 3e-8 off it in float64 (this failed MobileNet v3's float64 gradient check)."""
    x = torch.linspace(-4.0, 4.0, 17, dtype=torch.float64).reshape(1, 1, 1, 17)  # ±3 and 0 on the grid
    res = port(nn.Sequential(nn.Hardsigmoid()), x.float())
    xt = x.clone().requires_grad_(True)
    F.hardsigmoid(xt).sum().backward()
    with jax.enable_x64(True):
        g = jax.grad(lambda v: jnp.sum(res.module(v)))(jnp.asarray(x.numpy().transpose(0, 2, 3, 1).copy()))
    assert np.array_equal(np.asarray(g).transpose(0, 3, 1, 2), xt.grad.numpy())  # bit for bit, 0 at ±3
    assert xt.grad[0, 0, 0, 8].item() == float(np.float32(1 / 6)) != 1 / 6
