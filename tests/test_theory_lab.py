"""The Theory lab shows the schedule effect on any toy (issue 20): TV against N for every
schedule, checked against enumeration; readable ESS and weight-variance charts; a non-degenerate
default example; custom toy-random:V,L,seed within the enumeration cap, refused beyond."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer.gate import Gate, InputError
from explorer.settings import SAFE_MODEL_NAMES, DemoSettings
from explorer.theory_lab import (
    CUSTOM_MODEL,
    MAX_THEORY_SIZE,
    THEORY_MODELS,
    TheorySettings,
    check_figures,
    check_theory_model,
    run_checks,
)
from powersmc_core import SMCConfig, ToyLM, theory
from powersmc_core.engine.config import SCHEDULES
from powersmc_core.engine.run import PowerSMC
from powersmc_core.models.loading import load_model
from powersmc_core.theory.exact import (
    enumerate_sequences,
    power_distribution,
    result_distribution,
    total_variation,
)

DEMO = DemoSettings(enabled=True, allowed_models=SAFE_MODEL_NAMES)
SMALL = TheorySettings(alpha=4.0, n_particles=4, runs=3, n_max=8, seed=5)


@pytest.fixture(scope="module")
def trap_checks() -> dict:
    return dict(run_checks(ToyLM.trap(), SMALL))


def direct_mean_tv(model: ToyLM, schedule: str, n: int, settings: TheorySettings) -> float:
    """Mean over runs of TV(one run's weighted particles, exact pi_alpha by enumeration)."""
    table = enumerate_sequences(model, (), max_new_tokens=model.max_len)
    exact = power_distribution(table, settings.alpha)
    tvs = []
    for r in range(settings.runs):
        config = SMCConfig(
            alpha=settings.alpha,
            n_particles=n,
            schedule=schedule,
            ramp_tokens=model.max_len,
            max_new_tokens=model.max_len,
            seed=settings.seed + r,
        )
        result = PowerSMC(model, config, track_text=False).run(())
        tvs.append(total_variation(result_distribution(table, result), exact))
    return float(np.mean(tvs))


def test_tv_vs_n_draws_every_schedule_and_matches_enumeration(trap_checks):
    figure = check_figures(trap_checks)["tv"]
    lines = [t for t in figure.data if t.name in SCHEDULES]
    assert [t.name for t in lines] == list(SCHEDULES)
    assert all(t.error_y.visible and len(t.error_y.array) == 3 for t in lines)
    model = ToyLM.trap()
    for trace in lines:
        n_values, mean_tv = trace.customdata[:, 0], trace.customdata[:, 1]
        assert list(n_values) == SMALL.n_values()
        expected = [direct_mean_tv(model, trace.name, int(n), SMALL) for n in n_values]
        assert mean_tv == pytest.approx(expected, abs=1e-9)
    # Bridging changes the particle paths: the schedules' curves are not one curve repeated.
    by_name = {t.name: t.customdata[:, 1] for t in lines}
    assert not np.allclose(by_name["constant"], by_name["linear"])


def test_tv_vs_n_axes_are_log_with_ticks_at_the_n_values_run(trap_checks):
    figure = check_figures(trap_checks)["tv"]
    x, y = figure.layout.xaxis, figure.layout.yaxis
    assert x.type == "log" and y.type == "log"
    assert list(x.tickvals) == SMALL.n_values() and list(x.ticktext) == ["2", "4", "8"]
    assert y.tickvals and len(y.tickvals) == len(y.ticktext)  # labelled ticks, no minor digits
    assert x.title.text and y.title.text


def test_ess_lines_differ_in_dash_and_marker_and_both_axes_have_titles(trap_checks):
    figure = check_figures(trap_checks)["ess"]
    lines = [t for t in figure.data if t.name.endswith(": ESS/N")]
    assert len(lines) == len(SCHEDULES)
    styles = {(t.line.dash, t.marker.symbol) for t in lines}
    assert len({dash for dash, _ in styles}) == len({sym for _, sym in styles}) == len(SCHEDULES)
    assert figure.layout.xaxis.title.text == "token t"
    assert "ESS" in figure.layout.yaxis.title.text
    assert "resampling" in figure.layout.yaxis2.title.text


def test_weight_variance_legend_names_each_rows_prefix(trap_checks):
    figure = check_figures(trap_checks)["wvar"]
    names = [t.name for t in figure.data if t.showlegend]
    assert names and names[0] == "p(· | start)"
    assert all(n.startswith("p(· | ") and not n.startswith("row") for n in names)
    assert len(names) == 1 or names[1] in ("p(· | A)", "p(· | B)")  # the trap's first tokens
    assert "prefix" in figure.layout.legend.title.text


def test_the_default_example_is_not_degenerate():
    model = load_model(THEORY_MODELS[0])
    frame = theory.tv_vs_n(model, 4.0, [2, 32], runs=8, seed=0, ramp_tokens=model.max_len)
    small, large = frame["mean_tv"]
    assert small > 0.3 and large < small  # measured: 0.95 -> 0.6 (constant schedule)


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [
        ("toy-random:4,4,3", "toy-random:4,4,3"),
        ("toy-random: 4, 4, seed=3", "toy-random:4,4,3"),
        ("toy-random:3,8,1", "toy-random:3,8,1"),
        ("toy-trap", "toy-trap"),
    ],
)
def test_a_custom_toy_within_the_cap_is_accepted(spec, canonical):
    assert check_theory_model(spec, DEMO) == canonical


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "toy-random:5,6,0",
            f"V**L = 5**6 = 15625; the Theory lab enumerates every sequence and "
            f"admits V**L <= {MAX_THEORY_SIZE}",
        ),
        ("toy-random:8,8,0", "V**L = 8**8 = 16777216"),
        ("toy-random:9,2,0", "2 <= V <= 8"),
        ("smollm2", "needs a toy model"),
        ("toy-random:4,4", "bad toy model"),
        ("  ", "no toy model given: type one"),
    ],
)
def test_a_custom_toy_beyond_the_limits_is_refused_with_a_clear_message(spec, message):
    with pytest.raises(InputError) as err:
        check_theory_model(spec, DEMO)
    assert message in str(err.value)


def test_the_gate_refuses_a_toy_beyond_the_cap():
    with pytest.raises(InputError, match="V\\*\\*L"):
        Gate(DEMO).theory(ToyLM.trap(), "toy-random:5,6,0", 4.0, 4, 3, 8, 0)


def test_the_page_takes_a_custom_toy_and_refuses_one_too_large(monkeypatch, fresh_app_state):
    monkeypatch.setenv("POWERSMC_DEMO", "1")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.session_state["model_choice"] = "smollm2"  # not a toy: the lab opens on its default
    at.run()
    at.switch_page("app_pages/theory_lab.py").run()
    assert at.selectbox(key="theory_model").value == THEORY_MODELS[0]
    at.selectbox(key="theory_model").set_value(CUSTOM_MODEL).run()
    at.text_input(key="theory_custom").set_value("toy-random:4,4,seed=3").run()
    assert not at.exception and not at.error
    at.text_input(key="theory_custom").set_value("toy-random:8,8,0").run()
    assert not at.exception
    shown = [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]  # Markdown escapes undone
    assert any("toy-random:8,8,0 has V**L = 8**8" in e for e in shown), shown
