"""The ported forward as data: a straight-line list of ops over named values (fx node names).

The translator builds it; `parity.port.emit` writes it out as the straight-line `forward` of
model.py (one statement per op); the parity probe reads its kink sites.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NHWC, PLAIN, META = "nhwc", "plain", "meta"
"""Value layouts: `nhwc` is a torch NCHW tensor stored as NHWC; `plain` is stored exactly as torch
holds it; `meta` is not a tensor (an int, a shape tuple)."""


@dataclass(frozen=True)
class Ref:
    """An argument that names an earlier value."""

    name: str


@dataclass(frozen=True)
class Op:
    """out = kind(*args, **kwargs); `target` is the submodule path for kind 'module'."""

    out: str
    kind: str
    args: tuple = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    target: str = ""
    layout: str = PLAIN
    """Layout of the result."""
    dropout_index: int = -1
    """Which fold of the call's key feeds this op (dropout and random ops only)."""
    random_index: int = -1
    """Which random site this is, in program order (functional dropout, rand, bernoulli): a parity
    check feeds the same fixed values to the torch call with the same index."""


@dataclass(frozen=True)
class Program:
    """Ops in execution order, the input's value name and the output structure (Refs in tuples)."""

    input: str
    ops: tuple[Op, ...]
    output: Any

    @property
    def random_sites(self) -> int:
        return sum(op.random_index >= 0 for op in self.ops)


@dataclass(frozen=True)
class SliceArg:
    """A hashable stand-in for `slice` (unhashable before Python 3.12) in static op arguments."""

    start: Any
    stop: Any
    step: Any
