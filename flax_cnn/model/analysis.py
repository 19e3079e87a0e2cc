"""Numbers derived from a `ModelConfig` alone: per-layer shapes, params, MACs, receptive field.

Tests measure the same numbers from both built twins and require them to agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from flax_cnn.model.config import ModelConfig, out_size


@dataclass(frozen=True)
class LayerRow:
    """One row of the summary table; `name` is the module path in the torch naming."""

    name: str
    kind: str
    out_shape: tuple[int, int, int]  # (H, W, C), per image
    params: int
    macs: int
    rf: int


def layer_rows(cfg: ModelConfig) -> list[LayerRow]:
    """Rows for every conv, BatchNorm, pooling and dense layer, in forward order."""
    rows: list[LayerRow] = []
    cin, size, rf, jump = cfg.in_channels, cfg.input_size, 1, 1
    for block, i, s in cfg.layers():
        prefix = f"features.{block}.{i}"
        new = out_size(size, s)
        rf += (s.kernel_size - 1) * s.dilation * jump
        jump *= s.stride
        k2 = s.kernel_size**2
        if s.separable:
            rows.append(LayerRow(f"{prefix}.conv.depthwise", "Conv2d(dw)", (new, new, cin),
                                 k2 * cin, new * new * cin * k2, rf))
            rows.append(LayerRow(f"{prefix}.conv.pointwise", "Conv2d(1x1)", (new, new, s.out_channels),
                                 cin * s.out_channels, new * new * cin * s.out_channels, rf))
        else:
            p = k2 * (cin // s.groups) * s.out_channels
            rows.append(LayerRow(f"{prefix}.conv", "Conv2d", (new, new, s.out_channels), p, new * new * p, rf))
        rows.append(LayerRow(f"{prefix}.bn", "BatchNorm2d", (new, new, s.out_channels), 2 * s.out_channels, 0, rf))
        cin, size = s.out_channels, new
    rows.append(LayerRow("pool", "GlobalAvgPool", (1, 1, cin), 0, 0, rf))
    rows.append(LayerRow("fc", "Linear", (1, 1, cfg.num_classes),
                         cin * cfg.num_classes + cfg.num_classes, cin * cfg.num_classes, rf))
    return rows


def receptive_field(cfg: ModelConfig) -> int:
    """Receptive field (pixels, one side) of one output position of the conv trunk."""
    return layer_rows(cfg)[-1].rf


def param_count(cfg: ModelConfig) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(r.params for r in layer_rows(cfg))


def macs(cfg: ModelConfig) -> int:
    """Multiply-accumulates of one forward pass of one image (convs and the dense layer)."""
    return sum(r.macs for r in layer_rows(cfg))


def summary(cfg: ModelConfig) -> str:
    """A torchinfo-like table: name, output shape, params, receptive field, MACs, then totals."""
    rows = layer_rows(cfg)
    head = f"{'layer':<28} {'kind':<14} {'output (HxWxC)':>15} {'params':>9} {'RF':>4} {'MACs':>12}"
    rule = "=" * len(head)
    lines = [rule, head, rule]
    for r in rows:
        shape = "x".join(map(str, r.out_shape))
        lines.append(f"{r.name:<28} {r.kind:<14} {shape:>15} {r.params:>9,} {r.rf:>4} {r.macs:>12,}")
    lines += [
        rule,
        f"Total params: {param_count(cfg):,}",
        f"Receptive field: {receptive_field(cfg)} px (input {cfg.input_size}x{cfg.input_size})",
        f"Forward MACs per image: {macs(cfg):,} ({macs(cfg) / 1e6:.2f} M)",
    ]
    if cfg.residual:
        at = [f"features.{b}.{i}" for (b, i, _), s in zip(cfg.layers(), cfg.shortcuts()) if s]
        lines.append(f"Identity shortcuts ({'BN scale 0 at init' if cfg.zero_init_residual else 'BN scale 1'}): "
                     + (", ".join(at) or "none (no layer keeps its input's shape)"))
    lines.append(rule)
    return "\n".join(lines)
