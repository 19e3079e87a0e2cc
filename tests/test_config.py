"""ModelConfig: the default and the seed design's numbers and clear errors for invalid configs."""

import json
from pathlib import Path

import pytest

from flax_cnn import ModelConfig, macs, param_count, receptive_field, summary
from flax_cnn.model.config import SEED_BLOCKS, WIDE_BLOCKS, BlockSpec, ConfigError, ConvSpec


def test_default_is_the_recipe_net():
    cfg = ModelConfig()
    assert [b.name for b in cfg.blocks] == ["c1", "c2", "c3", "c4"]
    specs = [s for _, _, s in cfg.layers()]
    assert any(s.separable for s in specs) and any(s.dilation > 1 for s in specs)
    assert sum(s.stride == 2 for s in specs) == 2  # 32 -> 16 -> 8: C3 at 16x16, C4 at 8x8
    assert cfg.activation == "relu" and cfg.dropout > 0  # the brief's block: conv -> BN -> ReLU -> Dropout
    assert param_count(cfg) == 198_602 < 200_000
    assert receptive_field(cfg) == 67 > 44
    assert macs(cfg) == 39_678_688


def test_former_default_keeps_its_numbers():
    cfg = ModelConfig(blocks=WIDE_BLOCKS)
    assert param_count(cfg) == 198_602 and receptive_field(cfg) == 99 and macs(cfg) == 25_099_744


def test_seed_design_keeps_its_numbers():
    cfg = ModelConfig(blocks=SEED_BLOCKS, activation="relu")
    assert param_count(cfg) == 193_826 and receptive_field(cfg) == 99 and macs(cfg) == 22_463_232


@pytest.mark.parametrize("name, expected", [
    ("arch_seed.json", ModelConfig(blocks=SEED_BLOCKS, activation="relu", dropout=0.0)),
    ("arch_all_separable_wide_gelu.json", ModelConfig(blocks=WIDE_BLOCKS, activation="gelu", dropout=0.0)),  # the GELU preset
    ("arch_all_separable_wide.json", ModelConfig(blocks=WIDE_BLOCKS, dropout=0.0)),  # the former default's layout (f2, t)
    ("arch_wide_mid16_relu.json", ModelConfig()),  # the default, as its 15-epoch runs were launched
])
def test_experiment_files_are_the_named_designs(name, expected):
    path = Path(__file__).resolve().parents[1] / "docs" / "experiments" / name
    assert ModelConfig.from_dict(json.loads(path.read_text())) == expected


def test_summary_has_totals():
    text = summary(ModelConfig())
    assert "features.c3.1.conv" in text and "Total params: 198,602" in text and "Receptive field: 67" in text


def test_round_trips_through_dict():
    cfg = ModelConfig(dropout=0.1)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def _one(spec: ConvSpec, **kw) -> ModelConfig:
    return ModelConfig(blocks=(BlockSpec("c1", (ConvSpec(16), spec)),), **kw)


@pytest.mark.parametrize("make, field", [
    (lambda: _one(ConvSpec(32, stride=0)), "blocks[0].layers[1].stride"),
    (lambda: _one(ConvSpec(30, groups=4)), "blocks[0].layers[1].groups"),   # 16 in / 30 out, groups 4
    (lambda: _one(ConvSpec(32, groups=3)), "blocks[0].layers[1].groups"),   # 16 in not divisible by 3
    (lambda: _one(ConvSpec(32, kernel_size=4)), "blocks[0].layers[1].kernel_size"),
    (lambda: _one(ConvSpec(32, dilation=0)), "blocks[0].layers[1].dilation"),
    (lambda: _one(ConvSpec(32, separable=True, groups=2)), "blocks[0].layers[1].groups"),
    (lambda: _one(ConvSpec(32, kernel_size=7, padding=0), input_size=4), "blocks[0].layers[1].stride"),
    (lambda: _one(ConvSpec(32, padding=-1)), "blocks[0].layers[1].padding"),
    (lambda: ModelConfig(dropout=1.0), "dropout"),
    (lambda: ModelConfig(num_classes=1), "num_classes"),
    (lambda: ModelConfig(blocks=()), "blocks"),
])
def test_invalid_configs_name_the_field(make, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        make()


def test_spatial_collapse_names_the_layer():
    blocks = tuple(BlockSpec(f"c{i}", (ConvSpec(8, stride=2, padding=0),)) for i in range(1, 8))
    with pytest.raises(ConfigError, match=r"blocks\[4\]\.layers\[0\]\.stride: spatial size collapses to 0"):
        ModelConfig(blocks=blocks, input_size=32)
