"""Port any PyTorch CNN built from common layers to a native Flax NNX module (NHWC), with its weights.

    from parity.port import port
    result = port(torch_model, torch.randn(1, 3, 32, 32))
    result.module          # nnx.Module: result.module(x_nhwc, key=None); .train() / .eval()
    result.key_map         # flax_cnn.model.weights.KeyMapping rows, torch naming ↔ Flax paths
    result.report          # what each torch module / op became, parameters on both sides
"""

from parity.port.build import PortResult, port
from parity.port.errors import PortError
from parity.port.report import PortReport, PortRow
from parity.port.supported import supported

__all__ = ["PortError", "PortReport", "PortResult", "PortRow", "port", "supported"]
