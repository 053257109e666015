"""Shared look of every chart: one colour per particle, the same in every figure."""

from __future__ import annotations

import plotly.colors

__all__ = ["METHOD_COLORS", "particle_color", "particle_colors"]

_PALETTE = plotly.colors.qualitative.Dark24 + plotly.colors.qualitative.Light24

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
    return [particle_color(i) for i in range(n)]
