"""Size arguments as torch takes them (an int or a pair), normalised for the translation rules."""

from __future__ import annotations


def pair(v) -> tuple[int, int]:
    """A kernel/stride/padding/dilation argument as (h, w)."""
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def adaptive_size(size) -> tuple[int | None, int | None]:
    """An adaptive pool's output_size as (h, w); None keeps that input dimension."""
    return (size, size) if isinstance(size, int) or size is None else (size[0], size[1])
