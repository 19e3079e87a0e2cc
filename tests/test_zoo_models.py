"""The test zoo itself: every model builds from the seed alone, maps (N, 3, 32, 32) to (N, 10), stays small.

These check the torch models, not the porter (tests/test_port_zoo.py and the porter's own tests
port them); they run in seconds.
"""

from __future__ import annotations

import pytest
import torch

from tests.zoo import ZOO
from tests.zoo.idioms import ALL, idioms_of
from tests.zoo.resnet import resnet18


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return ZOO[name]()


@pytest.mark.parametrize("name", ZOO)
def test_same_seed_same_weights(name):
    a, b, other = build(name).state_dict(), build(name).state_dict(), build(name, seed=1).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], other[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("name", ZOO)
def test_forward_at_batch_2_and_8_in_both_modes(name):
    model = build(name)
    for training in (True, False):
        model.train(training)
        for n in (2, 8):
            with torch.set_grad_enabled(training):
                out = model(torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(n)))
            assert out.shape == (n, 10)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ZOO)
def test_eval_mode_is_deterministic(name):
    """Dropout and drop-connect run in training only: two eval passes agree bit for bit."""
    model = build(name).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", ZOO)
def test_small_enough_to_port_often(name):
    params = sum(p.numel() for p in build(name).parameters())
    assert 5_000 <= params <= 150_000


def test_resnet18_at_width_64_is_the_standard_cifar_resnet18():
    assert sum(p.numel() for p in resnet18(width=64).parameters()) == 11_173_962


def test_every_idiom_is_in_some_model():
    """The idioms the porter must learn (tests/zoo/idioms.py) each appear in at least one zoo model."""
    seen = set()
    for name, factory in ZOO.items():
        seen.update(idioms_of(factory, build(name)))
    assert seen == set(ALL)
