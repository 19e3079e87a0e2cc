"""torch.nn leaf modules → NNX layers (parity.port.layers) and one 'module' op each.

Anything not listed here is a PortError naming the module path and type. Unsupported options of
supported modules (padding_mode='reflect', BatchNorm momentum=None, return_indices…) fail too:
they would otherwise port to a silently different model.
"""

from __future__ import annotations

from typing import Callable

from torch import fx, nn

from flax_cnn.model import layers as fl
from parity.port import layers as pl
from parity.port.program import NHWC, PLAIN, Ref
from parity.port.translate import Translator


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _torch_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters(recurse=False))


def conv_padding(m: nn.Conv2d) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)); 'same' splits an odd total as torch does: the extra pad goes last."""
    if m.padding_mode != "zeros":
        raise ValueError(f"padding_mode={m.padding_mode!r} (only 'zeros' is ported)")
    if m.padding == "valid":
        return (0, 0), (0, 0)
    if m.padding == "same":
        out = []
        for k, d in zip(m.kernel_size, m.dilation):
            total = d * (k - 1)
            out.append((total // 2, total - total // 2))
        return out[0], out[1]
    ph, pw = _pair(m.padding)
    return (ph, ph), (pw, pw)


def _conv(t: Translator, node: fx.Node, m: nn.Conv2d) -> None:
    try:
        padding = conv_padding(m)
    except ValueError as e:
        raise t.fail(str(e)) from None

    def make():
        return pl.Conv2d(m.in_channels, m.out_channels, _pair(m.kernel_size), stride=_pair(m.stride),
                         dilation=_pair(m.dilation), padding=padding, groups=m.groups, bias=m.bias is not None)
    layer = t.add_layer(str(node.target), make)
    kind = "depthwise" if 1 < m.groups == m.in_channels else f"groups={m.groups}" if m.groups > 1 else "dense"
    _module_op(t, node, m, layer, NHWC, f"port.Conv2d ({kind}, flax_cnn.model.ops.conv2d"
               + (", pre-padded" if layer.pre_pad is not None else "") + ")")


def _batchnorm(t: Translator, node: fx.Node, m: nn.BatchNorm2d) -> None:
    if m.momentum is None:
        raise t.fail("BatchNorm2d(momentum=None) (a cumulative average) is not ported; set a momentum")
    if not m.track_running_stats or m.running_mean is None:
        raise t.fail("BatchNorm2d(track_running_stats=False) is not ported")
    layer = t.add_layer(str(node.target), lambda: pl.BatchNorm2d(m.num_features, momentum=m.momentum, eps=m.eps,
                                                                 affine=m.affine))
    _module_op(t, node, m, layer, NHWC, "port.BatchNorm2d (flax_cnn.model.layers.BatchNorm2d)"
               + ("" if m.affine else ", affine=False: constant scale/bias"))


def _linear(t: Translator, node: fx.Node, m: nn.Linear) -> None:
    layer = t.add_layer(str(node.target), lambda: pl.Linear(m.in_features, m.out_features, bias=m.bias is not None))
    _module_op(t, node, m, layer, PLAIN, "port.Linear (flax_cnn.model.layers.Linear, kernel = weight.T)")


def _dropout(t: Translator, node: fx.Node, m: nn.Dropout) -> None:
    layer = t.add_layer(str(node.target), lambda: fl.Dropout(float(m.p)))
    _module_op(t, node, m, layer, None, "flax_cnn.model.layers.Dropout (explicit key)", dropout=True)


def _activation(fn: str, options: Callable[[nn.Module], dict] = lambda m: {}):
    def rule(t: Translator, node: fx.Node, m: nn.Module) -> None:
        opts = tuple(sorted(options(m).items()))
        layer = t.add_layer(str(node.target), lambda: pl.Activation(fn, opts))
        shown = ", ".join(f"{k}={v!r}" for k, v in opts)
        _module_op(t, node, m, layer, None, f"port.Activation({fn}{', ' + shown if shown else ''})")
    return rule


def _maxpool(t: Translator, node: fx.Node, m: nn.MaxPool2d) -> None:
    if m.return_indices:
        raise t.fail("MaxPool2d(return_indices=True) is not ported")
    stride = m.stride if m.stride is not None else m.kernel_size
    layer = t.add_layer(str(node.target), lambda: pl.MaxPool2d(_pair(m.kernel_size), _pair(stride), _pair(m.padding),
                                                               _pair(m.dilation), bool(m.ceil_mode)))
    _module_op(t, node, m, layer, NHWC, "port.MaxPool2d (lax.reduce_window, -inf padding)")


def _avgpool(t: Translator, node: fx.Node, m: nn.AvgPool2d) -> None:
    stride = m.stride if m.stride is not None else m.kernel_size
    layer = t.add_layer(str(node.target), lambda: pl.AvgPool2d(
        _pair(m.kernel_size), _pair(stride), _pair(m.padding), bool(m.ceil_mode), bool(m.count_include_pad),
        m.divisor_override))
    _module_op(t, node, m, layer, NHWC, "port.AvgPool2d (lax.reduce_window, torch divisors)")


def adaptive_size(size) -> tuple[int | None, int | None]:
    return (size, size) if isinstance(size, int) or size is None else (size[0], size[1])


def _adaptive_avgpool(t: Translator, node: fx.Node, m: nn.AdaptiveAvgPool2d) -> None:
    layer = t.add_layer(str(node.target), lambda: pl.AdaptiveAvgPool2d(adaptive_size(m.output_size)))
    _module_op(t, node, m, layer, NHWC, "port.AdaptiveAvgPool2d (torch bins)")


def _flatten(t: Translator, node: fx.Node, m: nn.Flatten) -> None:
    t.pending_note = "flatten-then-Linear trap: flatten in torch's C,H,W order"
    layer = t.add_layer(str(node.target), lambda: pl.Flatten(m.start_dim, m.end_dim))
    _module_op(t, node, m, layer, PLAIN, "port.Flatten (on NCHW)")


def _identity(t: Translator, node: fx.Node, m: nn.Identity) -> None:
    layer = t.add_layer(str(node.target), pl.Identity)
    _module_op(t, node, m, layer, None, "port.Identity")


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
    params = (_torch_params(m), pl.count_params(layer)) if first else (0, 0)
    inplace = node.args[0] if getattr(m, "inplace", False) else None
    t.emit("module", (ref,), target=str(node.target), layout=use, flax=flax, torch_desc=repr(m).split("\n")[0],
           params=params, dropout=dropout, inplace_of=inplace)


MODULE_RULES: dict[type, Callable[[Translator, fx.Node, nn.Module], None]] = {
    nn.Conv2d: _conv,
    nn.BatchNorm2d: _batchnorm,
    nn.Linear: _linear,
    nn.Dropout: _dropout,
    nn.ReLU: _activation("relu"),
    nn.ReLU6: _activation("relu6"),
    nn.LeakyReLU: _activation("leaky_relu", lambda m: {"negative_slope": float(m.negative_slope)}),
    nn.GELU: _activation("gelu", lambda m: {"approximate": m.approximate}),
    nn.SiLU: _activation("silu"),
    nn.Sigmoid: _activation("sigmoid"),
    nn.Tanh: _activation("tanh"),
    nn.Hardswish: _activation("hardswish"),
    nn.Hardsigmoid: _activation("hardsigmoid"),
    nn.MaxPool2d: _maxpool,
    nn.AvgPool2d: _avgpool,
    nn.AdaptiveAvgPool2d: _adaptive_avgpool,
    nn.Flatten: _flatten,
    nn.Identity: _identity,
}


def translate_module(t: Translator, node: fx.Node, m: nn.Module) -> None:
    rule = MODULE_RULES.get(type(m))
    if rule is None:
        supported = ", ".join(sorted(c.__name__ for c in MODULE_RULES))
        raise t.fail(f"unsupported module {type(m).__module__}.{type(m).__name__} (supported: {supported})")
    rule(t, node, m)
