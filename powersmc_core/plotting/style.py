"""Shared look of every chart: one colour per particle, the same in every figure."""

from __future__ import annotations

import numpy as np
import plotly.colors

__all__ = ["METHOD_COLORS", "PALETTE_SIZE", "particle_color", "particle_colors"]

_PALETTE = plotly.colors.qualitative.Dark24 + plotly.colors.qualitative.Light24
_PALETTE_ARRAY = np.array(_PALETTE, dtype=object)

METHOD_COLORS = {
    "base": "#7f7f7f",
    "lowtemp": "#1f77b4",
    "smc": "#d62728",
    "mh": "#2ca02c",
    "bon": "#9467bd",
    "exact": "#111111",
}


def particle_color(index: int) -> str:
    """Colour of the particle with this root (initial) index, cycling for N > 48."""
    return _PALETTE[index % len(_PALETTE)]


def particle_colors(n: int) -> list[str]:
    """Colours of particles 0..n-1 (one array lookup, not a call per particle)."""
    return _PALETTE_ARRAY[np.arange(n) % len(_PALETTE)].tolist()


PALETTE_SIZE = len(_PALETTE)  # particle i and i + PALETTE_SIZE share a colour
