"""torch.nn leaf modules → NNX layers (parity.port.layers) and one 'module' op each.

Anything not listed here is lowered through torch's decompositions to Core ATen (parity.port.aten),
or is a PortError naming the module path, type and ATen op. Unsupported options of
supported modules (padding_mode='reflect', BatchNorm momentum=None, return_indices…) fail too:
they would otherwise port to a silently different model.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import fx, nn

from parity.port import layers as pl
from parity.port.program import NHWC, PLAIN, Ref
from parity.port.sizes import adaptive_size, pair
from parity.port.translate import Translator


def _torch_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters(recurse=False))


def conv_padding(m: nn.Conv2d) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)); 'same' splits an odd total as torch does: the extra pad goes last."""
    if m.padding == "valid":
        return (0, 0), (0, 0)
    if m.padding == "same":
        out = []
        for k, d in zip(m.kernel_size, m.dilation):
            total = d * (k - 1)
            out.append((total // 2, total - total // 2))
        return out[0], out[1]
    ph, pw = pair(m.padding)
    return (ph, ph), (pw, pw)


def _conv(t: Translator, node: fx.Node, m: nn.Conv2d) -> None:
    padding = conv_padding(m)
    layer = t.add_layer(str(node.target), lambda: pl.spec(
        "Conv2d", m.in_channels, m.out_channels, pair(m.kernel_size), stride=pair(m.stride),
        dilation=pair(m.dilation), padding=padding, groups=m.groups, bias=m.bias is not None,
        padding_mode=m.padding_mode))
    kind = "depthwise" if 1 < m.groups == m.in_channels else f"groups={m.groups}" if m.groups > 1 else "dense"
    mode = "" if m.padding_mode == "zeros" else f", padding_mode={m.padding_mode!r} as a pre-pad"
    _module_op(t, node, m, layer, NHWC, f"Conv2d ({kind}, explicit per-side padding{mode})")


def _conv_transpose(t: Translator, node: fx.Node, m: nn.ConvTranspose2d) -> None:
    if m.padding_mode != "zeros":
        raise t.fail(f"ConvTranspose2d(padding_mode={m.padding_mode!r}) is not ported")
    if len(node.args) != 1 or node.kwargs:
        raise t.fail("ConvTranspose2d called with output_size is not ported; set output_padding")
    layer = t.add_layer(str(node.target), lambda: pl.spec(
        "ConvTranspose2d", m.in_channels, m.out_channels, pair(m.kernel_size), stride=pair(m.stride),
        padding=pair(m.padding), output_padding=pair(m.output_padding), dilation=pair(m.dilation),
        groups=m.groups, bias=m.bias is not None))
    t.note("ConvTranspose2d: torch's (in, out/groups, kh, kw) kernel is stored (kh, kw, in, out/groups) and "
           "flipped per call; padding and output_padding as the gradient of a conv")
    _module_op(t, node, m, layer, NHWC, "ConvTranspose2d (lhs-dilated conv, flipped kernel)")


def _batchnorm(t: Translator, node: fx.Node, m: nn.BatchNorm2d) -> None:
    if m.momentum is None:
        raise t.fail("BatchNorm2d(momentum=None) (a cumulative average) is not ported; set a momentum")
    tracked = bool(m.track_running_stats and m.running_mean is not None)
    layer = t.add_layer(str(node.target), lambda: pl.spec("BatchNorm2d", m.num_features, momentum=m.momentum,
                                                          eps=m.eps, affine=m.affine, track_running_stats=tracked))
    _module_op(t, node, m, layer, NHWC, "BatchNorm2d (torch running statistics, unbiased running var)"
               + ("" if m.affine else ", affine=False") + ("" if tracked else ", batch statistics in both modes"))


def _groupnorm(t: Translator, node: fx.Node, m: nn.GroupNorm) -> None:
    layer = t.add_layer(str(node.target), lambda: pl.spec("GroupNorm", m.num_groups, m.num_channels, eps=m.eps,
                                                          affine=m.affine))
    if t.value(node.args[0]).rank != 4:
        raise t.fail("GroupNorm on a non-4-D input is not ported")
    _module_op(t, node, m, layer, NHWC, "GroupNorm (biased variance, torch's channel groups)")


def _instancenorm(t: Translator, node: fx.Node, m: nn.InstanceNorm2d) -> None:
    if m.track_running_stats:
        raise t.fail("InstanceNorm2d(track_running_stats=True) is not ported")
    layer = t.add_layer(str(node.target), lambda: pl.spec("InstanceNorm2d", m.num_features, eps=m.eps,
                                                          affine=m.affine))
    _module_op(t, node, m, layer, NHWC, "InstanceNorm2d (biased variance per sample and channel)")


def _layernorm(t: Translator, node: fx.Node, m: nn.LayerNorm) -> None:
    shape = tuple(int(s) for s in m.normalized_shape)
    layer = t.add_layer(str(node.target), lambda: pl.spec("LayerNorm", shape, eps=m.eps,
                                                          affine=m.elementwise_affine, bias=m.bias is not None))
    _module_op(t, node, m, layer, PLAIN, "LayerNorm (last dims in torch's order, biased variance)")


def _linear(t: Translator, node: fx.Node, m: nn.Linear) -> None:
    layer = t.add_layer(str(node.target), lambda: pl.spec("Linear", m.in_features, m.out_features,
                                                          bias=m.bias is not None))
    _module_op(t, node, m, layer, PLAIN, "Linear (kernel = weight.T)")


def _dropout(t: Translator, node: fx.Node, m: nn.Dropout) -> None:
    channels = isinstance(m, nn.Dropout2d)
    if channels and t.value(node.args[0]).rank != 4:
        raise t.fail("Dropout2d on a non-4-D input is not ported")
    layer = t.add_layer(str(node.target), lambda: pl.spec("Dropout", float(m.p), channels=channels))
    _module_op(t, node, m, layer, NHWC if channels else None,
               "Dropout" + (" per channel" if channels else "") + " (explicit key)", dropout=True)


def _prelu(t: Translator, node: fx.Node, m: nn.PReLU) -> None:
    nhwc = t.value(node.args[0]).rank == 4
    layer = t.add_layer(str(node.target), lambda: pl.spec("PReLU", m.num_parameters, nhwc=nhwc))
    _module_op(t, node, m, layer, NHWC if nhwc else PLAIN, "PReLU (a slope per channel)")


def _activation(fn: str, options: Callable[[nn.Module], dict] = lambda m: {}):
    def rule(t: Translator, node: fx.Node, m: nn.Module) -> None:
        opts = options(m)
        layer = t.add_layer(str(node.target), lambda: pl.activation(fn, **opts))
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(opts.items()))
        _module_op(t, node, m, layer, None, f"Activation({fn}{', ' + shown if shown else ''})")
    return rule


def _maxpool(t: Translator, node: fx.Node, m: nn.MaxPool2d) -> None:
    if m.return_indices:
        raise t.fail("MaxPool2d(return_indices=True) is not ported")
    stride = m.stride if m.stride is not None else m.kernel_size
    layer = t.add_layer(str(node.target), lambda: pl.spec("MaxPool2d", pair(m.kernel_size), pair(stride),
                                                          pair(m.padding), pair(m.dilation), bool(m.ceil_mode)))
    _module_op(t, node, m, layer, NHWC, "MaxPool2d (lax.reduce_window, -inf padding)")


def _avgpool(t: Translator, node: fx.Node, m: nn.AvgPool2d) -> None:
    stride = m.stride if m.stride is not None else m.kernel_size
    layer = t.add_layer(str(node.target), lambda: pl.spec(
        "AvgPool2d", pair(m.kernel_size), pair(stride), pair(m.padding), bool(m.ceil_mode),
        bool(m.count_include_pad), m.divisor_override))
    _module_op(t, node, m, layer, NHWC, "AvgPool2d (lax.reduce_window, torch divisors)")


def _adaptive_pool(cls: str):
    def rule(t: Translator, node: fx.Node, m: nn.Module) -> None:
        if getattr(m, "return_indices", False):
            raise t.fail(f"{cls}(return_indices=True) is not ported")
        layer = t.add_layer(str(node.target), lambda: pl.spec(cls, adaptive_size(m.output_size)))
        _module_op(t, node, m, layer, NHWC, f"{cls} (torch bins)")
    return rule


def _flatten(t: Translator, node: fx.Node, m: nn.Flatten) -> None:
    t.pending_note = "flatten-then-Linear trap: flatten in torch's C,H,W order"
    layer = t.add_layer(str(node.target), lambda: pl.spec("Flatten", m.start_dim, m.end_dim))
    _module_op(t, node, m, layer, PLAIN, "Flatten (on NCHW)")


def _identity(t: Translator, node: fx.Node, m: nn.Identity) -> None:
    layer = t.add_layer(str(node.target), lambda: pl.spec("Identity"))
    _module_op(t, node, m, layer, None, "Identity")


def _functional(rule: Callable[[Translator, fx.Node], None], **kwargs: Callable[[nn.Module], Any]):
    """A parameter-free module ported as its functional form: `rule` sees the call with the module's
    options as keyword arguments (the report still names the module)."""
    def module_rule(t: Translator, node: fx.Node, m: nn.Module) -> None:
        if len(node.args) != 1 or node.kwargs:
            raise t.fail("is called with more than one tensor input")
        call = _Call(node, {k: f(m) for k, f in kwargs.items()})
        rule(t, call)
    return module_rule


class _Call:
    """A module call seen as a function call: the node's input, the module's options as kwargs."""

    def __init__(self, node: fx.Node, kwargs: dict):
        self.node, self.args, self.kwargs = node, (node.args[0],), kwargs
        self.op, self.target, self.name, self.users, self.meta = "call_function", node.target, node.name, \
            node.users, node.meta


def _module_op(t: Translator, node: fx.Node, m: nn.Module, layer, layout: str | None, flax: str,
               dropout: bool = False) -> None:
    """One call of a ported layer on the node's single tensor input; layout None keeps the input's."""
    if len(node.args) != 1 or node.kwargs:
        raise t.fail(f"is called with {len(node.args)} positional and {len(node.kwargs)} keyword arguments; "
                     "the port supports one tensor input")
    src = t.value(node.args[0])
    use = layout or src.layout
    ref: Ref = t.tensor(node.args[0], use)
    first = str(node.target) not in t.counted  # a module called twice counts its parameters once
    t.counted.add(str(node.target))
    params = (_torch_params(m), pl.count_params(layer.build())) if first else (0, 0)
    inplace = node.args[0] if getattr(m, "inplace", False) else None
    t.emit("module", (ref,), target=str(node.target), layout=use, flax=flax, torch_desc=repr(m).split("\n")[0],
           params=params, dropout=dropout, inplace_of=inplace)


def _module_rules() -> dict[type, Callable[[Translator, fx.Node, nn.Module], None]]:
    from parity.port import function_rules as fr

    def pad_of(m):
        return tuple(m.padding)

    return {
        nn.Conv2d: _conv, nn.ConvTranspose2d: _conv_transpose,
        nn.BatchNorm2d: _batchnorm, nn.GroupNorm: _groupnorm, nn.InstanceNorm2d: _instancenorm,
        nn.LayerNorm: _layernorm, nn.Linear: _linear,
        nn.Dropout: _dropout, nn.Dropout2d: _dropout, nn.PReLU: _prelu,
        nn.ReLU: _activation("jax.nn.relu"),
        nn.ReLU6: _activation("jax.nn.relu6"),
        nn.LeakyReLU: _activation("leaky_relu", lambda m: {"negative_slope": float(m.negative_slope)}),
        nn.GELU: _activation("gelu", lambda m: {"approximate": m.approximate}),
        nn.SiLU: _activation("jax.nn.silu"),
        nn.Sigmoid: _activation("jax.nn.sigmoid"),
        nn.Tanh: _activation("jnp.tanh"),
        nn.Hardswish: _activation("jax.nn.hard_swish"),
        nn.Hardsigmoid: _activation("hardsigmoid"),
        nn.ELU: _activation("elu", lambda m: {"alpha": float(m.alpha)}),
        nn.Mish: _activation("mish"),
        nn.Softplus: _activation("softplus", lambda m: {"beta": float(m.beta), "threshold": float(m.threshold)}),
        nn.Hardtanh: _activation("hardtanh", lambda m: {"min_val": float(m.min_val), "max_val": float(m.max_val)}),
        nn.MaxPool2d: _maxpool, nn.AvgPool2d: _avgpool,
        nn.AdaptiveAvgPool2d: _adaptive_pool("AdaptiveAvgPool2d"),
        nn.AdaptiveMaxPool2d: _adaptive_pool("AdaptiveMaxPool2d"),
        nn.Flatten: _flatten, nn.Identity: _identity,
        nn.ZeroPad2d: _functional(fr.pad_rule, pad=pad_of, mode=lambda m: "constant", value=lambda m: 0.0),
        nn.ConstantPad2d: _functional(fr.pad_rule, pad=pad_of, mode=lambda m: "constant",
                                      value=lambda m: float(m.value)),
        nn.ReflectionPad2d: _functional(fr.pad_rule, pad=pad_of, mode=lambda m: "reflect"),
        nn.ReplicationPad2d: _functional(fr.pad_rule, pad=pad_of, mode=lambda m: "replicate"),
        nn.CircularPad2d: _functional(fr.pad_rule, pad=pad_of, mode=lambda m: "circular"),
        nn.Upsample: _functional(fr.interpolate_rule, size=lambda m: m.size, scale_factor=lambda m: m.scale_factor,
                                 mode=lambda m: m.mode, align_corners=lambda m: m.align_corners,
                                 recompute_scale_factor=lambda m: m.recompute_scale_factor),
        nn.UpsamplingNearest2d: _functional(fr.interpolate_rule, size=lambda m: m.size,
                                            scale_factor=lambda m: m.scale_factor, mode=lambda m: "nearest"),
        nn.UpsamplingBilinear2d: _functional(fr.interpolate_rule, size=lambda m: m.size,
                                             scale_factor=lambda m: m.scale_factor, mode=lambda m: "bilinear",
                                             align_corners=lambda m: True),
        nn.PixelShuffle: _functional(fr.pixel_shuffle_rule, upscale_factor=lambda m: m.upscale_factor),
        nn.PixelUnshuffle: _functional(fr.pixel_unshuffle_rule, downscale_factor=lambda m: m.downscale_factor),
        nn.Softmax: _functional(fr.softmax_rule("softmax"), dim=lambda m: m.dim),
        nn.LogSoftmax: _functional(fr.softmax_rule("log_softmax"), dim=lambda m: m.dim),
    }


_RULES: dict = {}


def module_rules() -> dict[type, Callable[[Translator, fx.Node, nn.Module], None]]:
    """torch.nn module type -> rule (built on first use: the function rules import this module)."""
    if not _RULES:
        _RULES.update(_module_rules())
    return _RULES


def translate_module(t: Translator, node: fx.Node, m: nn.Module) -> None:
    rule = module_rules().get(type(m))
    if rule is None:  # no readable rule: lowered op by op through torch's decompositions (or a PortError)
        from parity.port.aten import translate_opaque

        translate_opaque(t, node, m)
        return
    rule(t, node, m)
