"""Attention heads of a transformer whose checkpoint does not store them (ALIT and KARL files).

Heads leave no trace in the weight shapes, so they come from, in order: the user (``--heads``), the
file's own ``args``, its named preset, or the family's official size table.
"""

from __future__ import annotations

from typing import Mapping


def preset_heads(presets: Mapping[str, Mapping[str, int]], width: int, depth: int) -> int | None:
    """Heads of the official preset with this width and depth, if any."""
    for p in presets.values():
        if (p["width"], p["depth"]) == (width, depth):
            return p["heads"]
    return None


def pick_heads(presets: Mapping[str, Mapping[str, int]], explicit: int | None, from_args: int | None,
               preset: str | None, width: int, depth: int) -> int:
    """Heads of one transformer: `explicit`, else the file's args, else its preset, else the official table.

    Raises:
        ValueError: none of them says (the message names ``--heads``).
    """
    if explicit:
        return int(explicit)
    if from_args:
        return from_args
    if preset:
        return presets[preset]["heads"]
    h = preset_heads(presets, width, depth)
    if h is None:
        raise ValueError(f"cannot tell the attention heads for width {width}, depth {depth} (not stored in the "
                         "weights); pass --heads N (heads= in the Python API)")
    return h
