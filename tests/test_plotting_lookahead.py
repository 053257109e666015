"""The look-ahead view: built from a toy run's extras only, token text escaped."""

from __future__ import annotations

import numpy as np
import pytest

from powersmc_core.engine.config import SMCConfig
from powersmc_core.models.loading import load_model
from powersmc_core.plotting.lookahead import boundary_title, lookahead_boundaries, lookahead_figure
from powersmc_core.samplers.registry import make_sampler

HOSTILE = '<a href="//ev.il/p">log in</a><b>b</b>%{x}'


@pytest.fixture(scope="module")
def run():
    model = load_model("toy-trap")
    config = SMCConfig(n_particles=6, max_new_tokens=4, ess_threshold=1.0, seed=3)
    return model, make_sampler("lookahead", model, config).run([])


def _bars(fig, name):
    return [t for t in fig.data if t.name == name]


def test_the_figure_shows_the_boundarys_candidates_and_offspring(run):
    _, result = run
    boundaries = lookahead_boundaries(result.extras)
    assert len(boundaries) >= 2, "a toy run of 4 tokens has boundaries"
    last = boundaries[-1]
    fig = lookahead_figure(boundaries, token_label=lambda t: f"tok{t}")
    first = _bars(fig, "candidate 1 by ψ")[0]
    # Each particle's best candidate and its log ζ̂, as the extras hold them.
    assert list(first.text) == [repr(f"tok{row[0]}") for row in last.candidates]
    np.testing.assert_allclose(list(first.x), [row[0] for row in last.log_zeta])
    (offspring,) = _bars(fig, "offspring")
    assert list(offspring.x) == list(last.offspring)
    assert sum(last.offspring) == 6 and boundary_title(last) in fig.layout.title.text


def test_a_chosen_boundary_and_one_read_back_as_mappings_draw_the_same(run):
    _, result = run
    boundaries = lookahead_boundaries(result.extras)
    as_maps = [b.__dict__ for b in boundaries]
    one = lookahead_figure(boundaries, 0)
    other = lookahead_figure(as_maps, 0)
    assert one.layout.title.text == other.layout.title.text
    assert "before the first token" in one.layout.title.text
    assert list(_bars(one, "offspring")[0].x) == list(boundaries[0].offspring)


def test_hostile_token_text_is_escaped_and_never_in_a_template(run):
    _, result = run
    fig = lookahead_figure(lookahead_boundaries(result.extras), token_label=lambda _: HOSTILE)
    texts = [s for t in fig.data for s in (t.text or ()) if isinstance(s, str)]
    assert any("&lt;a href=" in s and "&#37;{x}" in s for s in texts), texts
    for trace in fig.data:
        for s in [*(trace.text or ()), *(trace.customdata or ())]:
            assert "<a" not in str(s) and "<b>" not in str(s) and "%{x}" not in str(s)
        assert "ev.il" not in (trace.hovertemplate or "")


def test_no_boundaries_is_an_empty_figure():
    assert lookahead_boundaries({"token_forwards": 3}) == []
    fig = lookahead_figure([])
    assert not fig.data and "no steps yet" in fig.layout.annotations[0].text
