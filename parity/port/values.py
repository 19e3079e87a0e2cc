"""Intermediate values of an emitted model's forward, read without changing its code.

The emitted `forward` is straight-line code with one local variable per traced value, so a parity
probe needs no hook in the user's file: a profile function copies the forward frame's locals as it
returns. Under `jax.jit` the copies are the traced values, so the caller can return them.
"""

from __future__ import annotations

import sys
from typing import Any

FORWARDS = ("forward", "forward_train", "forward_eval")


def forward_locals(module, x, names: tuple[str, ...], key=None) -> dict[str, Any]:
    """{name: value} of the local variables `names` of `module`'s forward on input `x`."""
    return forward_with_locals(module, x, names, key)[1]


def forward_with_locals(module, x, names: tuple[str, ...], key=None) -> tuple[Any, dict[str, Any]]:
    """(`module(x, key=key)`, {name: value} of its forward's local variables `names`)."""
    codes = {getattr(type(module), f).__code__ for f in FORWARDS if hasattr(type(module), f)}
    seen: dict[str, Any] = {}

    def profile(frame, event, _arg):
        if event == "return" and frame.f_code in codes:
            seen.update({n: frame.f_locals[n] for n in names if n in frame.f_locals})

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        out = module(x, key=key)
    finally:
        sys.setprofile(previous)
    return out, seen
