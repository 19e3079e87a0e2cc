"""The one error a port raises: it names the torch module path and the op that stopped it."""

from __future__ import annotations


class PortError(ValueError):
    """A module, op or construct the port cannot translate exactly; nothing is returned."""

    def __init__(self, where: str, what: str):
        self.where, self.what = where or "<root>", what
        super().__init__(f"{self.where}: {what}")
