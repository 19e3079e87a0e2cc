"""Port a PyTorch CNN to Flax NNX source (model.py) with its weights (model.safetensors, torch naming).

    from parity.port import port
    result = port(torch_model, torch.randn(2, 3, 32, 32), out_dir="ported")
    result.source_path     # ported/model.py: numpy/jax/flax/safetensors only; load() / save()
    result.module          # the nnx.Module built from that file: module(x_nhwc, key=None); .train() / .eval()
    result.key_map         # flax_cnn.model.weights.KeyMapping rows, torch naming <-> Flax paths
    result.report          # what each torch module / op became, parameters on both sides, unused tensors
"""

from parity.port.build import PortResult, port
from parity.port.errors import PortError
from parity.port.report import PortReport, PortRow
from parity.port.supported import supported

__all__ = ["PortError", "PortReport", "PortResult", "PortRow", "port", "supported"]
