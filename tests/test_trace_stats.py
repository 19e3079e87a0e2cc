"""MACs and receptive field read from a model's program (`flax_cnn.model.trace_stats`), checked against
the twin's config arithmetic (`analysis`), torch's own FlopCounterMode, and receptive fields worked by hand."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from flax import nnx
from torch.utils.flop_counter import FlopCounterMode

from flax_cnn.model import analysis
from flax_cnn.model.cnn import CNN
from flax_cnn.model.config import ModelConfig
from flax_cnn.model.trace_stats import trace_stats
from tests.port_helpers import ported
from tests.zoo import MODERN, ZOO

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _load(path: str) -> ModelConfig:
    return ModelConfig.from_dict(json.loads(Path(path).read_text()))


def _configs():
    default = ModelConfig()
    yield "default", default
    yield "gelu_preset", _load("docs/experiments/arch_all_separable_wide_gelu.json")
    yield "end_at_8x8", _load("docs/experiments/arch_end_at_8x8.json")
    yield "seed", _load("docs/experiments/arch_seed.json")
    yield "input_48", dataclasses.replace(default, input_size=48)


@pytest.mark.parametrize("name, cfg", list(_configs()), ids=[n for n, _ in _configs()])
def test_the_twins_program_gives_its_configs_numbers(name, cfg):
    stats = trace_stats(CNN(cfg, rngs=nnx.Rngs(0)), (cfg.input_size, cfg.input_size, cfg.in_channels))
    assert stats.macs == analysis.macs(cfg)
    assert stats.receptive_field == analysis.receptive_field(cfg)


def _torch_macs(model) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 32, 32))
    return counter.get_total_flops() // 2


# Receptive fields by hand: (k - 1) * dilation * jump per conv/pool, jump *= stride, up to the global pool.
# resnet18: stem 3; layer1 +4*2 = 11; layer2 +2 (stride 2), +3*4 = 25; layer3 +4, +3*8 = 53; layer4 +8, +3*16 = 109.
# vgg11 (conv3 + maxpool2 x5): 3 +1 (pool) =4, jump 2; +4 +2 = 10, jump 4; +8 +8 +4 = 30, jump 8;
#   +16 +16 +8 = 70, jump 16; +32 +32 (the last pool reduces 2x2 to 1x1: global) = 134.
# resnext29 (3x3 in each 1x1-3x3-1x1 block, 3 per stage): 3 +3*2 = 9; +2 (stride 2) +2*4 = 19; +4 +2*8 = 39.
# bit_resnet (GroupNorm statistics are not part of the field): 3 +2 +2 = 7; +2 (stride 2) +4 = 13; +4 = 17.
# nin (global average pooling adds no rule, as in resnet18): 5; +2 (max-pool, stride 2) +2*4 = 15; +2*2 (avg-pool,
#   stride 2) +4*2 = 27.
HAND_RF = {"resnet18": 109, "vgg11": 134, "resnext29": 39, "bit_resnet": 17, "nin": 27}
# Ops with no kernel/stride rule: bilinear's neighbour gathers, pixel (un)shuffle, attention over all positions.
NO_RF = {"unet_bilinear", "espcn", "ghost_mix", "nonlocal_net"}
# make test: every hand-worked field, every "n/a", a channel shuffle, transposed convs; the rest extended.
DEFAULT = {*HAND_RF, *NO_RF, "shufflenet_v1", "unet_transposed", "convnext", "mobilenet_v2"}
MODELS = [pytest.param(zoo, n, id=n, marks=() if n in DEFAULT else pytest.mark.extended)
          for zoo in (ZOO, MODERN) for n in zoo]


@pytest.mark.parametrize("zoo, name", MODELS)
def test_a_ported_model_has_torchs_macs_and_a_receptive_field(zoo, name):
    """MACs equal torch's FlopCounterMode on every zoo model (transposed convs counted by their real inputs,
    as torch does); the field is the hand-worked one, "n/a" where no rule applies, else larger than 1 pixel."""
    model, result = ported(zoo, name)
    stats = trace_stats(result.module, (32, 32, 3))
    assert stats.macs == _torch_macs(model)
    if name in NO_RF:
        assert stats.receptive_field is None and stats.blocked_by is not None
    elif name in HAND_RF:
        assert stats.receptive_field == HAND_RF[name]
    else:
        assert stats.receptive_field is not None and stats.receptive_field > 3
