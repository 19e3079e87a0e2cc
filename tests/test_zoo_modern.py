"""The opt-in modern zoo (tests/zoo/modern.py): every model builds from the seed alone, gives its stated
output shape at batch 2 and 8 in train and eval mode, backpropagates to every parameter, and keeps
its recorded size. Torch only: these check the models, not the porter; they run in about a second.
"""

from __future__ import annotations

import pytest
import torch

from tests.zoo import MODERN, MODERN_OUTPUT, ZOO

# Parameter counts at the default widths; a change here is a change to the zoo, made on purpose.
PARAMS = {
    "convnext": 237_874,
    "bit_resnet": 149_082,
    "unet_transposed": 117_412,
    "unet_bilinear": 113_140,
    "espcn": 26_828,
    "cbam_resnet": 181_222,
    "ghost_mix": 42_150,
    "nonlocal_net": 26_506,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return MODERN[name]()


def test_modern_is_separate_from_the_classic_zoo():
    assert len(ZOO) == 18
    assert not set(MODERN) & set(ZOO)
    assert set(MODERN) == set(MODERN_OUTPUT) == set(PARAMS)


@pytest.mark.parametrize("name", MODERN)
def test_parameter_count(name):
    assert sum(p.numel() for p in build(name).parameters()) == PARAMS[name]
    assert PARAMS[name] < 300_000


@pytest.mark.parametrize("name", MODERN)
def test_same_seed_same_weights(name):
    a, b, other = build(name).state_dict(), build(name).state_dict(), build(name, seed=1).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], other[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("name", MODERN)
def test_forward_at_batch_2_and_8_in_both_modes(name):
    model = build(name)
    for training in (True, False):
        model.train(training)
        for n in (2, 8):
            with torch.set_grad_enabled(training):
                out = model(torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(n)))
            assert out.shape == (n, *MODERN_OUTPUT[name])
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODERN)
def test_backward_reaches_every_parameter(name):
    model = build(name).train()
    torch.manual_seed(1)  # drop path draws from the global generator
    model(torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))).square().mean().backward()
    for path, p in model.named_parameters():
        assert p.grad is not None, path
        assert torch.isfinite(p.grad).all(), path
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", MODERN)
def test_eval_mode_is_deterministic(name):
    """Drop path runs in training only: two eval passes agree bit for bit."""
    model = build(name).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_convnext_drop_path_drops_whole_samples_in_training_only():
    model = build("convnext")
    block = model.stages[-1][-1]
    assert block.drop_path.p > 0
    x = torch.ones(64, 4, 2, 2)
    block.drop_path.train()
    torch.manual_seed(0)
    y = block.drop_path(x)
    per_sample = y.flatten(1)
    assert ((per_sample == 0).all(1) | (per_sample == 1 / (1 - block.drop_path.p)).all(1)).all()
    assert (per_sample == 0).all(1).any()
    block.drop_path.eval()
    assert torch.equal(block.drop_path(x), x)
