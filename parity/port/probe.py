"""Kink sites of a ported model: the input of every piecewise-linear op and max-pool, in both frameworks.

Parity trap: a pre-activation within float32 rounding of a kink (ReLU's 0, ReLU6's 6, Hardswish's
±3) can land on the other side than its exact value, and every gradient below it is then off by
that unit's whole gradient although the port is exact. Such a flip hides in a functional `F.relu`
between modules, where the suite's module-output detector does not look (measured: the CIFAR
ResNet-18 at width 64, batch 8, the ReLU after a residual add: one flip in 262,144 values put the
Flax float32 gradient 1e-2 off exact while torch's was 2e-6 off). The port knows every op, so
each kink op's input is read in the Flax program and, through the traced fx graph, in torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import fx

from parity.port.program import NHWC, Op, Ref
from parity.port.values import forward_with_locals
from parity.suite.masks import PATCHED
from parity.suite.pinned import argmax_gaps

# Where the derivative jumps, per ported function (clamp: its bounds).
KINK_POINTS: dict[str, tuple[float, ...]] = {"relu": (0.0,), "relu6": (0.0, 6.0), "leaky_relu": (0.0,),
                                             "hardswish": (-3.0, 3.0), "hardsigmoid": (-3.0, 3.0)}


@dataclass(frozen=True)
class KinkSite:
    """One kink op: the program value it reads, its points, and whether that value is stored NHWC.

    A max-pool (`pool`: kernel, stride, padding, dilation, ceil_mode) flips where rounding moves a
    window's maximum to another element than the exact maximum: the gradient goes elsewhere."""

    op: str
    input: str
    points: tuple[float, ...]
    nhwc: bool
    pool: tuple | None = None
    fn: str = ""
    """relu, relu6, leaky_relu, hardswish, hardsigmoid, hardtanh or clamp: which branches lie between the points."""
    bounds: tuple = ()
    """clamp/hardtanh: (min or None, max or None); leaky_relu: (negative_slope,)."""


_ACTIVATION_KINKS = {"jax.nn.relu": "relu", "jax.nn.relu6": "relu6", "leaky_relu": "leaky_relu",
                     "jax.nn.hard_swish": "hardswish", "hardsigmoid": "hardsigmoid", "hardtanh": "hardtanh"}


def _pool_config(op: Op, layers: dict) -> tuple | None:
    if op.kind == "module":
        spec = layers.get(op.target)
        if spec is None or spec.cls != "MaxPool2d":
            return None
        return tuple(spec.args)  # kernel, stride, padding, dilation, ceil_mode
    if op.kind != "max_pool2d":
        return None
    kw = dict(op.kwargs)
    config = (*op.args[1:4], kw.get("dilation", (1, 1)), kw.get("ceil_mode", False))
    return None if any(isinstance(a, Ref) for a in config) else config  # a kernel read off a traced size


def _site(op: Op, layers: dict) -> KinkSite | None:
    if not op.args or not isinstance(op.args[0], Ref):
        return None
    pool = _pool_config(op, layers)
    if pool is not None:
        return KinkSite(op.out, op.args[0].name, (), True, pool)
    fn, opts = op.kind, dict(op.kwargs)
    if op.kind == "module":
        spec = layers.get(op.target)
        fn = _ACTIVATION_KINKS.get(spec.fn) if spec is not None and spec.cls == "Activation" else None
        opts = dict(spec.kwargs) if spec is not None else {}
    bounds: tuple = ()
    if op.kind == "clamp":
        bounds = tuple(b if isinstance(b, (int, float)) else None for b in op.args[1:3])
        bounds = bounds + (None,) * (2 - len(bounds))
        points = tuple(float(b) for b in bounds if b is not None)
    elif fn == "hardtanh":
        bounds = (float(opts.get("min_val", -1.0)), float(opts.get("max_val", 1.0)))
        points = bounds
    else:
        points = KINK_POINTS.get(fn, ())
        if fn == "leaky_relu":
            bounds = (float(opts.get("negative_slope", 0.01)),)
    if not points:
        return None
    return KinkSite(op.out, op.args[0].name, points, op.layout == NHWC, fn="clamp" if op.kind == "clamp" else fn,
                    bounds=bounds)


class PortProbe:
    """Reads the kink ops' inputs of a port's train-mode program, in Flax and (via the fx graph) in torch."""

    read_locals = staticmethod(forward_with_locals)  # a plain function: a static of the suite's jitted reads

    def __init__(self, result) -> None:
        self.graph = result.graph_module.graph
        self.names = result.names
        self.sites = [s for s in (_site(op, result.layers) for op in result.program.ops) if s is not None]

    def torch_inputs(self, torch_model: torch.nn.Module, x_nchw: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
        """{kink op: its input} of `torch_model` (train mode, as it is) run through the traced graph."""
        gm = fx.GraphModule(torch_model, self.graph)
        wanted = {s.op for s in self.sites}
        seen: dict[str, np.ndarray] = {}

        class Reader(fx.Interpreter):
            def call_function(self, target, args, kwargs):
                return super().call_function(PATCHED.get(target, target), args, kwargs)

            def run_node(self, n):
                if n.name in wanted:  # before the op runs: an in-place one overwrites its input
                    arg = self.env[n.args[0]] if isinstance(n.args[0], fx.Node) else n.args[0]
                    seen[n.name] = arg.detach().cpu().numpy().copy()
                return super().run_node(n)

        with torch.no_grad():
            Reader(gm).run(torch.from_numpy(np.ascontiguousarray(x_nchw, dtype=np.dtype(dtype))))
        return {s.op: (seen[s.op].transpose(0, 2, 3, 1) if s.nhwc and seen[s.op].ndim == 4 else seen[s.op])
                for s in self.sites if s.op in seen}

    def flax_inputs(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{kink op: its input} from the emitted forward's locals (`parity.port.values.forward_locals`)."""
        return {s.op: values[self.names[s.input]] for s in self.sites if self.names[s.input] in values}

    @property
    def value_names(self) -> tuple[str, ...]:
        """The emitted forward's local variable names that hold the kink ops' inputs."""
        return tuple(dict.fromkeys(self.names[s.input] for s in self.sites))

    def flips(self, exact: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, int]:
        """Per kink op: entries whose float32 input lies on the other side of a kink than the exact one.

        An exact value below float32's smallest normal is on the kink as float32 sees it (XLA
        flushes subnormals, torch keeps them): no side to be on, not counted."""
        out = {}
        tiny = float(np.finfo(np.float32).tiny)
        sites = {s.op: s for s in self.sites}
        for name, e in exact.items():
            o = other.get(name)
            if o is None or o.shape != e.shape:
                continue
            n = len(argmax_gaps(e, o, sites[name].pool)) if sites[name].pool is not None else 0
            for k in sites[name].points:
                d = e.astype(np.float64) - k
                n += int(np.sum(((o.astype(np.float64) - k > 0) != (d > 0)) & (np.abs(d) >= tiny)))
            if n:
                out[name] = n
        return out
