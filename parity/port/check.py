"""The parity suite's families run on a ported pair (torch original, ported NNX module, derived key map).

The check inputs, stated in the report: standard-normal images in `count` batches of the port's
input shape, uniform labels; the torch model is a copy whose BatchNorm layers get random affine
parameters (scale in [1, 3], shift in [-1, 1]) and running statistics calibrated on another
batch, so eval mode is not BatchNorm's identity (an eps or running-statistics mistake shows) and
activations reach a ReLU6's clip (ReLU6 ported as ReLU shows). The user's own weights are not
touched, and `own_weights=True` checks with them as they are.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx

from parity.port.build import PortResult

DEFAULT_FAMILIES = ("forward",)
CHECK_FAMILIES = ("forward", "layers", "gradient", "batchnorm")


@dataclass(frozen=True)
class CheckInputs:
    """What both models are fed; `describe` is the line the report carries."""

    count: int = 4
    seed: int = 0
    own_weights: bool = False

    def describe(self, shape: tuple[int, ...]) -> str:
        weights = ("the model's own weights" if self.own_weights else
                   "BatchNorm affine randomized (scale U[1,3], shift U[-1,1]), running statistics calibrated on "
                   "another batch")
        return (f"check inputs: {self.count} batches of {tuple(shape)} standard-normal images, uniform labels "
                f"(seed {self.seed}); {weights}; the gradient family uses the best-conditioned kink-free batch")


def twin_pair(torch_module: torch.nn.Module, result: PortResult):
    """The pair as `parity.suite` takes it: every ported layer is compared, dropout sites get fixed masks."""
    from parity.port.probe import PortProbe
    from parity.suite.pair import TwinPair

    return TwinPair(torch_module, result.module, list(result.key_map), list(result.layer_pairs),
                    list(result.dropout_pairs), [f"ported from {result.report.model}, built from {result.source_path}"],
                    kink_probe=PortProbe(result))


def random_batches(input_shape: tuple[int, ...], num_classes: int, *, count: int = 3, seed: int = 0):
    """`count` (NCHW float32 images, int labels) batches: standard normal pixels, uniform labels."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(input_shape).astype(np.float32),
             rng.integers(0, num_classes, input_shape[0]).astype(np.int64)) for _ in range(count)]


def calibrated_bn(torch_module: torch.nn.Module, x: np.ndarray, *, seed: int = 0) -> torch.nn.Module:
    """A copy with random BatchNorm affine parameters and running statistics from one train-mode pass on `x`.

    Random scales up to 3 make ReLU6 clip; statistics that match the activations keep eval mode
    as well-conditioned as train mode however deep the net (random ones compound layer by layer).
    """
    model = copy.deepcopy(torch_module)
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    with torch.no_grad():
        for m in bns:
            if m.affine:
                m.weight.copy_(1.0 + 2.0 * torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(2.0 * torch.rand(m.bias.shape, generator=g) - 1.0)
            m.momentum = 1.0  # running statistics := this batch's
        modes = {m: m.training for m in model.modules()}
        with torch.random.fork_rng():
            model.train()
            model(torch.from_numpy(x))
        for m, training in modes.items():
            m.training = training
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
            if m.num_batches_tracked is not None:  # None without running statistics
                m.num_batches_tracked.zero_()
    return model


def run_checks(torch_module: torch.nn.Module, result: PortResult, input_shape: tuple[int, ...], *,
               families: tuple[str, ...] = DEFAULT_FAMILIES, float64: bool = False,
               inputs: CheckInputs = CheckInputs()):
    """A `parity.suite.results.Report` of `families` on the pair. The gradient families differentiate
    cross-entropy of (N, classes) logits, or a fixed random projection of any other output (a dense map,
    a tuple or dict of tensors)."""
    try:
        from flax_cnn.training.config import TrainConfig
        from parity.suite.loss import projection_tree
        from parity.suite.results import skipped
        from parity.suite.runner import SuiteInputs, SuiteOptions, run_suite
    except ImportError as e:  # the suite lives beside the port; say which piece is missing
        raise RuntimeError(f"the parity suite (parity.suite) is not available: {e}") from e

    out_shape = _output_shape(result)
    logits = isinstance(out_shape, tuple) and len(out_shape) == 2
    run = tuple(f for f in families if f != "gradient" or out_shape is not None)
    batches = random_batches(input_shape, out_shape[1] if logits else 2, count=inputs.count, seed=inputs.seed)
    if out_shape is not None and not logits:  # a dense or structured output: the loss is a fixed projection
        shapes = _with_batch(out_shape, input_shape[0])  # the traced example may have another batch size
        batches = [(x, projection_tree(shapes, inputs.seed + 100 + i)) for i, (x, _) in enumerate(batches)]
    model = torch_module
    if not inputs.own_weights:
        calib_shape = input_shape if result.batch_size is not None else (16, *input_shape[1:])
        calib = random_batches(calib_shape, 2, count=1, seed=inputs.seed + 1)[0][0]
        model = calibrated_bn(torch_module, calib, seed=inputs.seed)
    report = run_suite(twin_pair(model, result), SuiteInputs(batches, TrainConfig(label_smoothing=0.0)),
                       SuiteOptions(families=run, float64=float64, bn_steps=min(3, inputs.count),
                                    gradient_candidates=inputs.count))
    report.notes.append(inputs.describe(input_shape))
    if out_shape is not None and not logits and "gradient" in run:
        what = (f"the output (N, {', '.join(map(str, out_shape[1:]))}) is not (N, classes) logits"
                if isinstance(out_shape, tuple) else "the output is a tuple/dict of tensors")
        report.notes.append(f"gradient loss: {what}, so the loss is sum(output * P) / N (summed over the "
                            "outputs) with P a fixed standard-normal projection / sqrt(values per sample) "
                            "(torch layout, seeded), the same for both frameworks")
    if "gradient" in families and out_shape is None:
        report.checks.append(skipped("gradient", "d loss / d param", "the output holds values that are not "
                                     "tensors: not checked"))
    return report


def _output_shape(result: PortResult):
    """The torch output's shape for the example input (from the traced graph): a tuple for one tensor, a
    list / dict of them for a tuple / dict output; None if any part is not a tensor."""
    from parity.port.translate import torch_shape

    def shapes(a):
        if isinstance(a, fx.Node):
            return torch_shape(a)
        if isinstance(a, (tuple, list)):
            inner = [shapes(v) for v in a]
            return None if any(v is None for v in inner) else inner
        if isinstance(a, dict):
            inner = {k: shapes(v) for k, v in a.items()}
            return None if any(v is None for v in inner.values()) else inner
        return None

    out = next(n for n in result.graph_module.graph.nodes if n.op == "output").args[0]
    return shapes(out)


def _with_batch(shapes, n: int):
    if isinstance(shapes, dict):
        return {k: _with_batch(v, n) for k, v in shapes.items()}
    if isinstance(shapes, list):
        return [_with_batch(v, n) for v in shapes]
    return (n, *shapes[1:])
