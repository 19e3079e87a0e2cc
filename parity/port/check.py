"""The parity suite's families run on a ported pair (torch original, ported NNX module, derived key map)."""

from __future__ import annotations

import numpy as np
import torch
from torch import fx

from parity.port.build import PortResult

DEFAULT_FAMILIES = ("forward",)
CHECK_FAMILIES = ("forward", "layers", "gradient")


def twin_pair(torch_module: torch.nn.Module, result: PortResult):
    """The pair as `parity.suite` takes it: every ported layer is compared, dropout sites get fixed masks."""
    from parity.suite.pair import TwinPair

    return TwinPair(torch_module, result.module, list(result.key_map), list(result.layer_pairs),
                    list(result.dropout_pairs), [f"ported from {result.module.port_source}"])


def random_batches(input_shape: tuple[int, ...], num_classes: int, *, count: int = 3, seed: int = 0):
    """`count` (NCHW float32 images, int labels) batches: standard normal pixels, uniform labels."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(input_shape).astype(np.float32),
             rng.integers(0, num_classes, input_shape[0]).astype(np.int64)) for _ in range(count)]


def run_checks(torch_module: torch.nn.Module, result: PortResult, input_shape: tuple[int, ...], *,
               families: tuple[str, ...] = DEFAULT_FAMILIES, seed: int = 0):
    """A `parity.suite.results.Report` of `families` on the pair (gradient needs (N, classes) logits)."""
    try:
        from flax_cnn.train_config import TrainConfig
        from parity.suite.results import skipped
        from parity.suite.runner import SuiteInputs, SuiteOptions, run_suite
    except ImportError as e:  # the suite lives beside the port; say which piece is missing
        raise RuntimeError(f"the parity suite (parity.suite) is not available: {e}") from e

    out_shape = _output_shape(result)
    grads_ok = out_shape is not None and len(out_shape) == 2
    run = tuple(f for f in families if f != "gradient" or grads_ok)
    batches = random_batches(input_shape, out_shape[1] if grads_ok else 2, seed=seed)
    report = run_suite(twin_pair(torch_module, result), SuiteInputs(batches, TrainConfig(label_smoothing=0.0)),
                       SuiteOptions(families=run))
    if "gradient" in families and not grads_ok:
        report.checks.append(skipped("gradient", "d loss / d param", f"output shape {out_shape} is not (N, classes)"))
    return report


def _output_shape(result: PortResult) -> tuple[int, ...] | None:
    """The torch output shape for the example input (from the traced graph), None if not one tensor."""
    from parity.port.translate import torch_shape

    out = next(n for n in result.graph_module.graph.nodes if n.op == "output").args[0]
    return torch_shape(out) if isinstance(out, fx.Node) else None
