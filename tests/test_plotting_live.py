"""The live-run charts: bounded work at any N, honest ranges, readable layout.

Figures are checked by their structure (trace counts, ranges, legend position), never
by timing: a builder whose trace count grows with N is what made a 10,000-particle
trace take 35 s.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from powersmc_core import PowerSMC, SMCConfig, ToyLM
from powersmc_core.engine.records import StepRecord
from powersmc_core.plotting import live as charts
from powersmc_core.plotting.common import min_span
from powersmc_core.plotting.renyi import MAX_LINES
from powersmc_core.plotting.style import PALETTE_SIZE

BIG_N = 10_000


def _record(n: int, step: int = 1, log_weights=None, seed: int = 0) -> StepRecord:
    rng = np.random.default_rng(seed)
    log_w = np.full(n, -math.log(n)) if log_weights is None else np.asarray(log_weights)
    return StepRecord(
        step=step,
        alpha=4.0,
        tau=0.25,
        catch_up=0.0,
        tokens=tuple(int(t) for t in rng.integers(0, 5, n)),
        log_weights=tuple(float(v) for v in log_w),
        log_increment=tuple(float(v) for v in rng.normal(size=n)),
        renyi=tuple(float(v) for v in rng.uniform(0, 2, n)),
        log_p=tuple(float(v) for v in -rng.uniform(0, 5, n)),
        finished=(False,) * n,
        ess=float(n),
        resampled=False,
        ancestors=tuple(range(n)),
        roots=tuple(range(n)),
        n_lineages=n,
        n_unique_ancestors=n,
        log_z=0.0,
        elapsed=0.0,
        texts=tuple(f"text {i}" for i in range(n)),
    )


def _trap_records(n: int = 8, tokens: int = 3) -> list[StepRecord]:
    config = SMCConfig(alpha=4.0, n_particles=n, max_new_tokens=tokens, seed=3)
    return list(PowerSMC(ToyLM.trap(), config).stream([]))


def test_all_live_figures_at_ten_thousand_particles_have_bounded_trace_counts():
    figures = charts.live_figures([_record(BIG_N)], ess_threshold=0.5, alpha=4.0)
    counts = {name: len(fig.data) for name, fig in figures.items()}
    # Rényi: at most one line trace per palette colour per panel, plus band, mean, two spreads.
    assert counts["renyi"] <= 2 * PALETTE_SIZE + 5, counts
    # Weights: the heaviest particles and one bar for the rest (at most WEIGHT_BARS + 1 bars).
    assert counts["heatmap"] == 2 and counts["weights"] == 2, counts
    assert sum(len(t.y) for t in figures["weights"].data) <= charts.WEIGHT_BARS + 1
    assert counts["genealogy"] <= 4 and counts["ess"] <= 2 and counts["schedule"] <= 3, counts
    assert counts["diversity"] <= 3, counts
    assert sum(counts.values()) < 150  # the old Rényi chart alone had 2·N = 20,000 traces


def test_renyi_draws_at_most_max_lines_particles_but_spreads_cover_all():
    n = MAX_LINES + 100
    log_w = np.full(n, -math.log(n))
    log_w[-1] = -0.5  # the heaviest particle is the last slot: it must be drawn
    fig = charts.renyi_figure([_record(n, log_weights=log_w)])
    drawn = set()
    for trace in fig.data:
        if trace.customdata is not None and trace.name and trace.name.startswith("particles"):
            drawn |= {int(i) for i in np.asarray(trace.customdata)}
    assert len(drawn) == MAX_LINES and n - 1 in drawn


def test_renyi_lines_keep_each_particles_colour_and_values():
    records = _trap_records()
    renyi = np.array([r.renyi for r in records], dtype=float)
    fig = charts.renyi_figure(records)
    for trace in fig.data:
        if not (trace.name or "").startswith("particles") or trace.xaxis != "x":
            continue
        ids = np.asarray(trace.customdata)
        ys = np.asarray(trace.y, dtype=float)
        for pid in np.unique(ids):
            assert trace.line.color == charts.particle_colors(8)[pid % PALETTE_SIZE]
            got = ys[ids == pid][:-1]  # the last point of each particle is the NaN gap
            np.testing.assert_allclose(got, renyi[:, pid].astype(np.float32), equal_nan=True)


def test_heatmap_colour_range_has_a_minimum_span_at_uniform_weights():
    n = 4
    noisy = np.full(n, -math.log(n)) + np.array([0, 1e-7, -1e-7, 5e-8])  # float noise only
    fig = charts.log_weight_heatmap([_record(n, log_weights=noisy), _record(n, step=2)])
    heat = fig.data[0]
    assert heat.zmax - heat.zmin >= 2 * charts.HEATMAP_MIN_HALF_SPAN
    assert heat.zmin <= 0 <= heat.zmax  # uniform (log N·W = 0) sits inside, not at an end
    np.testing.assert_allclose(np.asarray(heat.z, dtype=float), 0.0, atol=1e-6)


def test_heatmap_range_follows_real_spread_and_is_floored():
    log_w = np.log(np.array([0.97, 0.01, 0.02, 1e-300]))
    heat = charts.log_weight_heatmap([_record(4, log_weights=log_w)]).data[0]
    assert heat.zmax == pytest.approx(math.log(4 * 0.97), rel=1e-6)
    assert heat.zmin == -charts.HEATMAP_FLOOR_NATS


def test_renyi_axes_never_stretch_float_noise():
    n = 16
    record = _record(n)
    flat = StepRecord(
        **{
            **record.__dict__,
            "renyi": (1.0,) * n,
            "log_increment": tuple(-0.7 + 1e-9 * i for i in range(n)),
        }
    )
    fig = charts.renyi_figure([flat, StepRecord(**{**flat.__dict__, "step": 2})])
    for axis in (fig.layout.yaxis, fig.layout.yaxis2):
        low, high = axis.range
        assert high - low >= 0.5


def test_min_span_widens_about_the_middle_and_respects_a_floor():
    low, high = min_span(np.array([1.0, 1.0 + 1e-9]), 1.0)
    assert high - low >= 1.0 and low < 1.0 < high
    low, high = min_span(np.array([0.0, 1e-8]), 1.0, floor=0.0)
    assert low == 0.0 and high >= 1.0
    assert min_span(np.array([np.nan]), 2.0) == [0.0, 2.0]


def test_renyi_legend_sits_beside_the_panels_not_over_the_titles():
    legend = charts.renyi_figure(_trap_records()).layout.legend
    # Right of the plotting area (x >= 1, anchored left) and within its height (top-anchored
    # at or below y = 1): the figure title and subplot titles are above y = 1.
    assert legend.x >= 1.0 and legend.xanchor == "left"
    assert legend.yanchor == "top" and legend.y <= 1.0


def test_single_panel_legends_have_their_own_row_below_the_title():
    fig = charts.ess_figure(_trap_records(), ess_threshold=0.5)
    assert fig.layout.legend.yanchor == "bottom" and fig.layout.legend.y >= 1.0
    assert fig.layout.title.yanchor == "top" and fig.layout.margin.t >= 70


def test_schedule_and_ess_axes_start_at_zero():
    records = _trap_records()
    assert charts.schedule_figure(records, alpha=4.0).layout.yaxis.rangemode == "tozero"
    ess_range = charts.ess_figure(records).layout.yaxis.range
    assert ess_range[0] == 0 and ess_range[1] >= records[-1].n_particles


def test_particle_table_shows_top_k_and_counts_the_rest():
    n = BIG_N
    log_w = np.full(n, -math.log(n) - 1.0)
    heavy = [17, 4242, 9999]
    log_w[heavy] = [-0.5, -1.0, -1.5]
    table = charts.particle_table(_record(n, log_weights=log_w), top_k=10)
    assert len(table.frame) == 10 and table.n_more == n - 10
    assert table.frame["particle"].tolist()[:3] == heavy
    assert "leader" in table.frame["status"][0] and "9,990 more" in table.more_caption
    weights = table.frame["weight"].to_numpy()
    assert np.all(np.diff(weights) <= 0)


def test_particle_table_survives_out_of_range_log_weights():
    """A trace's log w = 800 used to overflow math.exp in the app's table."""
    log_w = np.array([800.0, 0.0, -np.inf, 799.0])
    table = charts.particle_table(_record(4, log_weights=log_w), top_k=2)
    assert table.frame["particle"].tolist() == [0, 3] and table.n_more == 2
    assert table.frame["weight"].sum() == pytest.approx(1.0)  # the other two carry ~0


def test_particle_table_of_a_small_run_lists_everyone():
    record = _trap_records()[-1]
    table = charts.particle_table(record, top_k=50)
    assert table.n_more == 0 and table.more_caption == ""
    assert sorted(table.frame["particle"]) == list(range(record.n_particles))
    assert table.frame["weight"].sum() == pytest.approx(1.0)


def test_theory_variance_chart_starts_at_zero():
    import pandas as pd

    from powersmc_core.plotting.theory import renyi_variance_figure

    frame = pd.DataFrame(
        {"step": [1, 2], "predicted_variance": [1e-30, 2e-30], "var_log_increment": [0.0, 1e-30]}
    )
    assert renyi_variance_figure(frame).layout.yaxis.rangemode == "tozero"


def _scale_colour(scale, value, cmin, cmax):
    """The colour a stepwise colour scale gives ``value`` (band containing its position)."""
    position = (value - cmin) / (cmax - cmin)
    for (low, colour), (high, _) in zip(scale[::2], scale[1::2], strict=True):
        if low <= position <= high:
            return colour
    raise AssertionError(position)


@pytest.mark.parametrize("n", [8, 1000])
def test_weight_bars_keep_each_slots_colour_at_any_n(n):
    from powersmc_core.plotting.style import particle_color

    log_w = np.random.default_rng(1).normal(size=n)
    bars = charts.weights_figure(_record(n, log_weights=log_w)).data[0]
    slots = [int(s) for s in np.asarray(bars.customdata)[:, 4]]  # the slot of each bar
    if n <= charts.WEIGHT_BARS:
        assert slots == list(range(n))
    else:  # the heaviest slots only, heaviest first
        assert slots == np.argsort(-log_w, kind="stable")[: charts.WEIGHT_BARS].tolist()
    assert list(bars.marker.color) == [particle_color(i) for i in slots]


def test_heatmap_colour_key_keeps_each_slots_colour_at_large_n():
    from powersmc_core.plotting.style import particle_color

    n = 1000
    key = charts.log_weight_heatmap([_record(n)]).data[1].marker
    # Large N: palette indices on a stepwise scale, no per-string validation.
    scale = [(float(p), c) for p, c in key.colorscale]
    for i in (0, 1, 47, 48, 500, n - 1):
        got = _scale_colour(scale, float(key.color[i]), key.cmin, key.cmax)
        assert got.lower() == particle_color(i).lower(), i
