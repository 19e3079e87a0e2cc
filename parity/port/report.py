"""The port report: each torch module or op, what it became, parameter counts on both sides."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PortRow:
    """One traced torch module call or op and its Flax counterpart."""

    scope: str
    """Torch module path (the called module, or the module whose forward calls the op)."""
    torch: str
    flax: str
    torch_params: int
    flax_params: int
    shape: tuple[int, ...] | None
    """Torch-layout output shape for the example input (None for non-tensors)."""


@dataclass(frozen=True)
class PortReport:
    model: str
    input_shape: tuple[int, ...]
    rows: tuple[PortRow, ...]
    torch_params: int
    flax_params: int
    tensors: int
    """Keys in the key map (= the torch state_dict)."""
    notes: tuple[str, ...] = ()
    unused: tuple[str, ...] = ()
    """state_dict keys no ported op reads (kept in the weights)."""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_markdown(self) -> str:
        head = [f"# Port of {self.model}", "",
                f"Input {tuple(self.input_shape)} (torch NCHW; the Flax module takes NHWC). "
                f"Parameters: torch {self.torch_params:,}, Flax {self.flax_params:,}; "
                f"{self.tensors} tensors in the key map.", ""]
        head += [f"- {n}" for n in self.notes] + ([""] if self.notes else [])
        table = ["| scope | torch | flax | params (torch / flax) | output (torch layout) |",
                 "| --- | --- | --- | --- | --- |"]
        for r in self.rows:
            shape = "×".join(map(str, r.shape)) if r.shape is not None else ""
            params = f"{r.torch_params:,} / {r.flax_params:,}" if (r.torch_params or r.flax_params) else ""
            table.append(f"| {r.scope or '<root>'} | `{r.torch}` | `{r.flax}` | {params} | {shape} |")
        return "\n".join(head + table) + "\n"
