"""Live charts readable at any N and explained in place (issue 20, parts 5 and 6).

Checked by structure: bar and trace counts, masses against hand computations, legend
styles, captions present. At N = 256 no chart may be a barcode: the weight chart keeps
the heaviest ``WEIGHT_BARS`` particles plus one bar holding the rest's exact mass, and
the genealogy draws only the heaviest particles' ancestry.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from powersmc_core import PowerSMC, SMCConfig, ToyLM
from powersmc_core.engine.genealogy import distinct_sequences, sequence_classes, sequences_at
from powersmc_core.engine.records import StepRecord
from powersmc_core.plotting import live as charts
from powersmc_core.plotting.diversity import distinct_texts, diversity_figure
from powersmc_core.plotting.lineage import GENEALOGY_LINES, ancestry
from powersmc_core.plotting.tables import group_particles, grouped_table

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _record(
    texts: tuple[str, ...] | None,
    weights: list[float],
    roots: tuple[int, ...] | None = None,
    step: int = 1,
    finished: tuple[bool, ...] | None = None,
) -> StepRecord:
    n = len(weights)
    return StepRecord(
        step=step,
        alpha=4.0,
        tau=0.25,
        catch_up=0.0,
        tokens=tuple(range(n)),
        log_weights=tuple(math.log(w) if w > 0 else -math.inf for w in weights),
        log_increment=(0.0,) * n,
        renyi=(0.5,) * n,
        log_p=tuple(-float(i) for i in range(n)),
        finished=finished or (False,) * n,
        ess=1.0 / sum(w * w for w in weights),
        resampled=False,
        ancestors=tuple(range(n)),
        roots=roots or tuple(range(n)),
        n_lineages=len(set(roots or range(n))),
        n_unique_ancestors=n,
        log_z=0.0,
        elapsed=0.0,
        texts=texts,
    )


def _big(n: int = 256, seed: int = 0) -> StepRecord:
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n, 0.3))
    texts = tuple(f"answer {i % 40}" for i in range(n))
    return _record(texts, list(weights), finished=tuple(bool(i % 3 == 0) for i in range(n)))


def _run(n: int, tokens: int, seed: int = 3, model: ToyLM | None = None) -> list[StepRecord]:
    config = SMCConfig(alpha=4.0, n_particles=n, max_new_tokens=tokens, seed=seed)
    return list(PowerSMC(model or ToyLM.trap(), config).stream([]))


# ---- grouping by text ---------------------------------------------------------------------
def test_grouping_by_text_counts_copies_masses_and_lineages():
    texts = ("B x", "A y", "B x", "A z", "B x", "A y")
    weights = [0.30, 0.05, 0.20, 0.15, 0.10, 0.20]
    roots = (0, 1, 0, 3, 4, 1)
    groups = group_particles(weights, texts, roots)
    # By hand: "B x" = 0.6 (slots 0, 2, 4; roots {0, 4}), "A y" = 0.25 (1, 5; root 1),
    # "A z" = 0.15 (slot 3).
    np.testing.assert_allclose(groups.mass, [0.6, 0.25, 0.15])
    assert groups.count.tolist() == [3, 2, 1]
    assert groups.lineages.tolist() == [2, 1, 1]
    assert groups.head.tolist() == [0, 5, 3]  # the heaviest copy of each text
    assert groups.label.tolist() == [0, 1, 0, 2, 0, 1]
    assert groups.mass.sum() == pytest.approx(1.0)


def test_grouped_table_shows_top_rows_and_the_rest_with_its_mass():
    record = _big()
    table = grouped_table(record, top_k=12)
    weights = charts.normalised_weights(record.log_weights)
    per_text: dict[str, float] = {}
    for text, w in zip(record.texts or (), weights, strict=True):
        per_text[text] = per_text.get(text, 0.0) + w
    ranked = sorted(per_text.values(), reverse=True)
    assert table.n_groups == 40 and len(table.frame) == 12 and table.n_more == 28
    np.testing.assert_allclose(table.frame["weight"], ranked[:12])
    assert table.more_mass == pytest.approx(sum(ranked[12:]))
    assert table.frame["weight"].sum() + table.more_mass == pytest.approx(1.0)
    assert (
        table.frame["copies"].sum()
        + sum(1 for t in record.texts or () if t not in set(table.frame["text"]))
        == record.n_particles
    )
    assert "and 28 more texts" in table.more_caption
    assert table.frame["status"][0].startswith("★ leader")


def test_grouped_table_without_texts_groups_by_the_keys_given():
    record = _record(None, [0.5, 0.25, 0.25])
    assert len(grouped_table(record).frame) == 3  # no texts, no keys: one row per slot
    table = grouped_table(record, keys=np.array([7, 7, 1]))
    assert table.frame["copies"].tolist() == [2, 1]
    assert table.frame["weight"].tolist() == pytest.approx([0.75, 0.25])


# ---- diversity over time ------------------------------------------------------------------
def test_distinct_sequences_and_texts_equal_a_direct_count():
    records = _run(16, 4, model=ToyLM.random(vocab_size=5, max_len=4, seed=2))
    direct = [len({tuple(s) for s in sequences_at(records, t)}) for t in range(1, 5)]
    assert distinct_sequences(records).tolist() == direct
    steps, counts = distinct_texts(records)
    assert steps.tolist() == [r.step for r in records]
    assert counts.tolist() == [len(set(r.texts or ())) for r in records]
    assert max(direct) > 1  # the check is not vacuous
    # Slots with equal class labels hold equal sequences, and only those.
    classes = sequence_classes(records)[-1]
    seqs = sequences_at(records, len(records))
    for i in range(16):
        for j in range(16):
            assert (classes[i] == classes[j]) == (seqs[i] == seqs[j])


def test_diversity_figure_plots_lineages_sequences_and_the_stored_texts_only():
    records = _run(8, 3)
    thinned = [records[0], replace(records[1], texts=None), records[2]]
    fig = diversity_figure(thinned)
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["lineages (distinct roots)"].y) == [r.n_lineages for r in records]
    texts = next(t for n, t in by_name.items() if n.startswith("distinct texts"))
    assert list(texts.x) == [records[0].step, records[2].step]
    assert "stored texts" in texts.name  # says that some steps have none
    assert "diversity" in charts.live_figures(records, 0.5, 4.0)


# ---- weights at large N -------------------------------------------------------------------
def test_top_k_weight_bars_and_the_rest_bar_hold_exactly_the_rest_mass():
    record = _big()
    weights = charts.normalised_weights(record.log_weights)
    fig = charts.weights_figure(record)
    bars = [t for t in fig.data if t.type == "bar"]
    n_bars = sum(len(t.y) for t in bars)
    assert n_bars <= charts.WEIGHT_BARS + 1
    top, rest = bars[0], bars[1]
    heaviest = np.sort(weights)[::-1][: charts.WEIGHT_BARS]
    np.testing.assert_allclose(np.asarray(top.y, dtype=float), heaviest)
    shown = [int(x[1:]) for x in top.x]  # "#slot"
    mask = np.ones(weights.size, dtype=bool)
    mask[shown] = False
    assert rest.y[0] == pytest.approx(weights[mask].sum(), rel=1e-12)
    assert rest.y[0] + sum(top.y) == pytest.approx(1.0)
    assert rest.x[0] == f"other {256 - charts.WEIGHT_BARS}"
    assert rest.xaxis != top.xaxis and rest.yaxis != top.yaxis  # its own panel and 0..1 axis
    assert tuple(fig.layout[rest.yaxis.replace("y", "yaxis")].range) == (0, 1.15)
    assert "hatched = finished" in fig.layout.title.text


def test_small_n_weight_chart_is_unchanged_one_bar_per_slot():
    record = _record(("a", "b", "c"), [0.2, 0.5, 0.3])
    fig = charts.weights_figure(record)
    assert len(fig.data) == 1 and list(fig.data[0].x) == [0, 1, 2]
    assert "hatched" not in fig.layout.title.text  # nothing finished, nothing to explain


def test_genealogy_at_256_draws_only_the_heaviest_ancestry():
    records = _run(256, 6, model=ToyLM.random(vocab_size=6, max_len=6, seed=1))
    fig = charts.genealogy_figure(records)
    assert len(fig.data) <= 4
    assert f"{GENEALOGY_LINES} heaviest" in fig.layout.title.text
    nodes = next(t for t in fig.data if t.name == "particle")
    last = np.asarray(nodes.x) == records[-1].step
    assert last.sum() == GENEALOGY_LINES  # one node per drawn particle at the last step
    edges = sum(
        int(np.isnan(np.asarray(t.x, dtype=float)).sum())
        for t in fig.data
        if t.name.endswith("lineage")
    )
    assert edges <= GENEALOGY_LINES * (len(records) - 1)


def test_ancestry_walks_back_through_parents():
    par = np.array([[0, 1, 2], [0, 0, 2], [1, 1, 1]])  # row t: parent at t-1 of each slot
    on = ancestry(par, np.array([0]))  # slot 0 at t=2 <- slot 1 at t=1 <- slot 0 at t=0
    assert on.tolist() == [[True, False, False], [False, True, False], [True, False, False]]
    on = ancestry(par, np.array([2]))
    assert on[2].tolist() == [False, False, True] and on[1].tolist() == [False, True, False]
    assert on[0].tolist() == [True, False, False]


# ---- legends and one-point charts ---------------------------------------------------------
def test_renyi_summary_lines_differ_in_the_legend():
    fig = charts.renyi_figure(_run(8, 3))
    by_name = {t.name: t for t in fig.data}
    styles = {
        name: (by_name[name].line.color, by_name[name].line.dash)
        for name in ("mean H", "std_i log G", "|1−α_t|·std_i H")
    }
    assert len(set(styles.values())) == 3, styles
    assert styles["mean H"][0] != styles["std_i log G"][0]


def test_one_step_ess_and_schedule_draw_a_marker():
    records = _run(8, 1)
    assert len(records) == 1
    for fig in (charts.ess_figure(records, 0.5), charts.schedule_figure(records, 4.0)):
        line = fig.data[0]
        assert "markers" in line.mode and len(line.x) == 1


# ---- pages --------------------------------------------------------------------------------
def test_home_links_the_papers():
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["model_choice"] = "toy-trap"
    at.run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "https://arxiv.org/abs/2602.10273" in text
    assert "https://arxiv.org/abs/2510.14901" in text


def test_live_page_explains_its_charts_where_they_are_drawn(fresh_app_state):
    from explorer.views import EXPLAIN

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["model_choice"] = "toy-trap"
    at.run()
    at.switch_page("app_pages/live_smc.py").run()
    assert not at.caption or not any("Hatched bars" in c.value for c in at.caption)  # no run
    at.button(key="live_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    captions = " ".join(c.value for c in at.caption)
    for name in ("ess", "weights", "renyi", "genealogy", "diversity"):
        assert EXPLAIN[name] in captions, name
    assert "Hatched bars are finished particles" in captions
    assert any("diversity" in str(c.key) for c in at.get("plotly_chart"))
    glossary = [e for e in at.expander if "log Ẑ" in e.label]
    assert glossary, [e.label for e in at.expander]
    text = " ".join(m.value for m in glossary[0].markdown)
    assert "Σ_y p(y|x)^α" in text and "probability equal to its weight" in text
    assert "fraction of the N particles" in text and "weighted mass P̂" in text
    # The particle table: one row per distinct text, the leader explained.
    table = at.dataframe[0].value
    assert {"copies", "weight", "lineages", "text"} <= set(table.columns)
    assert table["text"].is_unique and table["weight"].is_monotonic_decreasing
