"""Shared look of every chart: one colour per particle, the same in every figure."""

from __future__ import annotations

import numpy as np
import plotly.colors

from powersmc_core.samplers.registry import method_colors

__all__ = [
    "METHOD_COLORS",
    "PALETTE_SIZE",
    "particle_color",
    "particle_colors",
    "particle_marker_colors",
]

_PALETTE = plotly.colors.qualitative.Dark24 + plotly.colors.qualitative.Light24
_PALETTE_ARRAY = np.array(_PALETTE, dtype=object)

# Each method's colour is declared with the method (``samplers.registry``); "exact" is the
# exact law of the theory pages, not a method. A live view: later registrations show too.
METHOD_COLORS = method_colors({"exact": "#111111"})


def particle_color(index: int) -> str:
    """Colour of the particle with this root (initial) index, cycling for N > 48."""
    return _PALETTE[index % len(_PALETTE)]


def particle_colors(n: int) -> list[str]:
    """Colours of particles 0..n-1 (one array lookup, not a call per particle)."""
    return _PALETTE_ARRAY[np.arange(n) % len(_PALETTE)].tolist()


PALETTE_SIZE = len(_PALETTE)  # particle i and i + PALETTE_SIZE share a colour
# Above this many markers, colours go to Plotly as numbers on a discrete palette scale:
# Plotly validates a list of colour strings one by one (0.5 s for 10,000 bars).
MAX_COLOR_STRINGS = 256
_DISCRETE_SCALE = [
    [edge / PALETTE_SIZE, colour] for k, colour in enumerate(_PALETTE) for edge in (k, k + 1)
]


def particle_marker_colors(slots: np.ndarray | int) -> dict[str, object]:
    """Marker colour settings for particles ``slots`` (an index array, or n for 0..n-1).

    Small sets: the colour strings themselves. Large ones: each slot's palette index on a
    stepwise colour scale, the same colours drawn without per-string validation.
    """
    index = np.arange(slots) if isinstance(slots, int) else np.asarray(slots, dtype=np.int64)
    if index.size <= MAX_COLOR_STRINGS:
        return {"color": _PALETTE_ARRAY[index % PALETTE_SIZE].tolist()}
    return {
        "color": index % PALETTE_SIZE,
        "colorscale": _DISCRETE_SCALE,
        "cmin": -0.5,
        "cmax": PALETTE_SIZE - 0.5,
        "showscale": False,
    }
