"""The architecture: `ModelConfig` (config), the numbers derived from it (analysis), the Flax twin
(cnn) with its torch-exact layers and kernels (layers, batch_norm, ops), and the weight key map (weights).

Framework-free to import: `config` and `analysis` load without JAX; the rest import it.
"""
