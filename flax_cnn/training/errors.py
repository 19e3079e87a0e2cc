"""The error a training run stops with when it cannot go on."""


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss, unusable run directory); the message says why."""
