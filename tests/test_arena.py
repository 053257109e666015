"""The pivotal family and the arena (issue 21, item 5).

- Pivotal tables: the rare first token holds 60-90% of pi_4's mass (exact, by enumeration)
  while p puts a few per cent on it, and the names load through the one name parser.
- The arena scores against enumeration: an exact sampler (the law itself, registered as a
  method for the test) has TV 0 and rare-branch error 0; token-level temperature's known
  exact bias on the trap is found beyond its error bar; the forwards column is the
  registry's ``cost``; a registered method joins, a failing one is skipped with its reason.
- CSV, JSON and the CLI; the Arena page under demo caps (AppTest, POWERSMC_DEMO=1).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.records import SMCResult
from powersmc_core.models.errors import ModelNameError
from powersmc_core.models.loading import load_model
from powersmc_core.models.names import parse_model_name
from powersmc_core.models.toy import ToyLM
from powersmc_core.samplers.registry import METHODS, Method, make_sampler, register, unregister
from powersmc_core.theory.arena import (
    ArenaSettings,
    arena_lines,
    matched_forwards,
    run_arena,
)
from powersmc_core.theory.exact import enumerate_sequences, power_distribution
from powersmc_core.theory.pivotal import (
    PIVOTAL_FAMILY,
    pivot_token,
    pivotal_table,
    rare_branch_mass,
)

ROOT = Path(__file__).resolve().parents[1]
EXACT = "exact-test"
FORWARDS = 17  # the fake method's cost: the arena must report the registry's number


# ---- the pivotal family ----------------------------------------------------------------------
@pytest.mark.parametrize("index", [*PIVOTAL_FAMILY, 4, 5, 6, 7])
def test_the_rare_branch_holds_most_of_pi_4_and_p_rarely_starts_it(index):
    table = pivotal_table(index)
    mass = table.exact_rare_mass(4.0)
    assert 0.6 <= mass <= 0.9
    # Independent of rare_branch_mass's bookkeeping: pi_4 summed by hand over the rows.
    pi = power_distribution(table.table, 4.0)
    by_hand = sum(
        float(w) for s, w in zip(table.table.sequences, pi, strict=True) if s[0] == table.rare_token
    )
    assert mass == pytest.approx(by_hand, abs=1e-12)
    first = table.model.next_token_logprobs(()).exp()
    assert table.rare_probability == pytest.approx(float(first[table.rare_token]))
    assert table.rare_probability <= 0.11  # rare under p
    # The law of p itself: its mass behind r is p(r), the first-token marginal.
    p = table.table.log_p.exp()
    assert table.rare_branch_mass(p) == pytest.approx(table.rare_probability, abs=1e-12)
    # A myopic proposal at the first step (p^4 renormalised) almost never starts there.
    myopic = torch.softmax(4.0 * first[:-1].log(), 0)[table.rare_token]
    assert float(myopic) < 0.01
    assert first[-1] == 0.0  # the first token is never EOS


def test_pivotal_names_parse_and_load_the_same_table():
    spec = parse_model_name("toy-pivotal:3")
    assert (spec.kind, spec.family, spec.name, spec.safe) == (
        "toy",
        "toy-pivotal",
        "toy-pivotal:3",
        True,
    )
    model = load_model("TOY-PIVOTAL:3")
    assert model.name == "toy-pivotal:3" and pivot_token(model) == pivotal_table(3).rare_token
    assert torch.equal(model._table, ToyLM.pivotal(3)._table)  # deterministic by index
    assert not torch.equal(model._table[0], ToyLM.pivotal(2)._table[0])
    for bad in ("toy-pivotal:1000", "toy-pivotal:-1", "toy-pivotal:x"):
        with pytest.raises(ModelNameError):
            parse_model_name(bad)
    assert pivot_token(load_model("toy-trap")) == 1
    assert pivot_token(load_model("toy-random:4,4,0")) is None


def test_rare_branch_mass_counts_only_the_first_token():
    model = ToyLM.trap()
    table = enumerate_sequences(model)
    law = torch.zeros(len(table.sequences), dtype=torch.float64)
    rows = {s: i for i, s in enumerate(table.sequences)}
    law[rows[(1, 2)]] = 0.25  # "B x"
    law[rows[(0, 2)]] = 0.75  # "A x": x after A is not the B branch
    assert rare_branch_mass(table, law, 1) == pytest.approx(0.25)


# ---- an exact sampler, registered for the test -----------------------------------------------
class _ExactSampler:
    """Returns every completion weighted by pi_alpha exactly (the law itself)."""

    method = EXACT

    def __init__(self, model, config: SMCConfig) -> None:
        self.model, self.config = model, config

    def run(self, prompt) -> SMCResult:
        table = enumerate_sequences(self.model, prompt, max_new_tokens=self.config.max_new_tokens)
        pi = power_distribution(table, self.config.alpha)
        return SMCResult(
            completions=[list(s) for s in table.sequences],
            weights=pi.tolist(),
            chosen=int(pi.argmax()),
            log_p=table.log_p.tolist(),
            log_z=0.0,
            n_resamples=0,
            ess_trace=[],
            finished=table.finished,
            n_steps=0,
            elapsed=0.0,
            method=EXACT,
            extras={"token_forwards": 999},  # the registry's cost below says 17
        )

    def stream(self, prompt):  # pragma: no cover - the arena only calls run
        raise NotImplementedError


@pytest.fixture
def exact_method() -> Iterator[Method]:
    method = register(
        Method(
            EXACT,
            "the exact law (test only)",
            lambda model, config, **_: _ExactSampler(model, config),
            ("alpha", "n_particles", "max_new_tokens", "seed"),
            "#000000",
            cost=lambda result: FORWARDS,
        )
    )
    try:
        yield method
    finally:
        unregister(EXACT)


@pytest.fixture
def broken_method() -> Iterator[Method]:
    def build(model, config, **_):
        raise NotImplementedError("needs a transformer")

    method = register(Method("broken-test", "fails on toys", build, ("seed",), "#000000"))
    try:
        yield method
    finally:
        unregister("broken-test")


def test_an_exact_sampler_scores_zero_and_a_registered_method_joins(exact_method, broken_method):
    settings = ArenaSettings(
        suites=("trap", "pivotal"), runs=2, budgets=(4,), schedules=("constant",)
    )
    labels = [line.label for line in arena_lines(settings)]  # methods=None: the whole registry
    assert EXACT in labels and "smc·constant" in labels and "broken-test" in labels
    result = run_arena(
        ArenaSettings(
            suites=("trap", "pivotal"), methods=(EXACT, "broken-test"), runs=2, budgets=(4, 8)
        )
    )
    frame = result.frame
    assert set(frame["line"]) == {EXACT}
    assert len(frame) == 5 * 2  # five toys x two budgets
    assert np.allclose(frame["tv"], 0.0, atol=1e-12)
    assert np.allclose(frame["tv_of_mean"], 0.0, atol=1e-12)
    assert np.allclose(frame["rare_mass_error"], 0.0, atol=1e-12)
    assert (frame["forwards"] == FORWARDS).all()  # the registry's cost, not the extras
    assert [s["model"] for s in result.skipped] == [
        "toy-trap",
        *(f"toy-pivotal:{i}" for i in PIVOTAL_FAMILY),
    ]
    assert all("NotImplementedError: needs a transformer" in s["reason"] for s in result.skipped)


# ---- the built-in methods against enumeration ------------------------------------------------
@pytest.fixture(scope="module")
def trap_arena():
    settings = ArenaSettings(
        suites=("trap",), methods=("smc", "lowtemp", "bon"), runs=20, budgets=(8, 32, 128)
    )
    return run_arena(settings)


def test_the_forwards_column_is_the_registry_cost_of_the_same_runs(trap_arena):
    row = trap_arena.frame.query("line == 'smc·linear' and budget == 8").iloc[0]
    model = load_model("toy-trap")
    costs = []
    for r in range(20):
        config = SMCConfig(
            alpha=4.0, n_particles=8, schedule="linear", ramp_tokens=3, max_new_tokens=3, seed=r
        )
        costs.append(
            METHODS["smc"].cost(make_sampler("smc", model, config, track_text=False).run([]))
        )
    assert row["forwards"] == pytest.approx(np.mean(costs))
    assert row["forwards_se"] == pytest.approx(np.std(costs, ddof=1) / math.sqrt(20))


def test_the_arena_finds_temperatures_exact_bias_and_smc_within_its_error_bar(trap_arena):
    frame = trap_arena.frame
    # Token-level temperature 1/4 starts with B with probability 0.4^4 / (0.6^4 + 0.4^4).
    q_b = 0.4**4 / (0.6**4 + 0.4**4)
    exact = frame["rare_mass_exact"].iloc[0]
    b_branch = 0.36**4 + 2 * 0.02**4  # B x, B y, B z
    assert exact == pytest.approx(b_branch / (b_branch + 3 * 0.2**4), abs=1e-9)
    low = frame.query("line == 'lowtemp' and budget == 128").iloc[0]
    assert low["rare_mass"] == pytest.approx(q_b, abs=5 * low["rare_mass_se"] + 1e-9)
    assert low["rare_mass_error"] > 5 * low["rare_mass_se"]
    smc = frame.query("line == 'smc·adaptive' and budget == 128").iloc[0]
    assert smc["rare_mass_error"] <= 5 * smc["rare_mass_se"] + 0.02  # consistent (O(1/N) bias)


def test_matched_forwards_reads_the_reference_at_its_own_budget(trap_arena):
    matched = trap_arena.matched()
    ref = trap_arena.frame.query("method == 'smc' and budget == 32")
    for _, row in ref.iterrows():
        at = matched.query(f"line == '{row['line']}' and factor == 1.0").iloc[0]
        # the reference forwards are the mean over schedules, so interpolation moves it a little
        assert at["tv"] == pytest.approx(row["tv"], abs=0.05)
    # bon ran N = 8..128; 4x the N = 32 forwards is inside; a line that cannot reach: NaN
    assert not math.isnan(matched.query("line == 'bon' and factor == 4.0")["tv"].iloc[0])
    short = trap_arena.frame.query("line == 'bon' and budget == 8")
    assert math.isnan(
        matched_forwards(pd.concat([ref, short])).query("line == 'bon'")["tv"].iloc[0]
    )


def test_csv_and_json_are_written_and_parse(trap_arena, tmp_path):
    paths = trap_arena.write(tmp_path / "out")
    frame = pd.read_csv(paths["csv"])
    assert len(frame) == len(trap_arena.frame) and "forwards" in frame.columns
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert len(data["rows"]) == len(frame) and data["reference"] == {
        "method": "smc",
        "n_particles": 32,
    }
    assert data["settings"]["runs"] == 20 and data["matched"] and data["summary"]
    assert len(pd.read_csv(paths["matched_csv"])) == len(trap_arena.matched())


def test_settings_refuse_what_cannot_run():
    with pytest.raises(ValueError, match="unknown suites"):
        ArenaSettings(suites=("nope",))
    with pytest.raises(ValueError, match="unknown methods"):
        ArenaSettings(methods=("nope",))
    with pytest.raises(ValueError, match="runs must be"):
        ArenaSettings(runs=1)


def test_arena_job_stops_at_the_gates_checkpoint():
    from explorer.theory_lab import arena_job, arena_settings

    settings = arena_settings(["trap"], ["smc"], 3, 8, 4.0, 0, 8)
    calls = []

    class Cap(Exception):
        """Like the gate's own: not an error a skipped method raises, so it passes through."""

    def checkpoint():
        calls.append(1)
        if len(calls) == 4:
            raise Cap("cap")

    with pytest.raises(Cap, match="cap"):
        list(arena_job(settings, checkpoint))
    assert len(calls) == 4  # called after every sampler run, not once per cell


# ---- the CLI ---------------------------------------------------------------------------------
def test_the_cli_runs_with_tiny_settings(tmp_path, capsys):
    from powersmc_core.cli.main import main

    out = tmp_path / "arena"
    argv = [
        "arena",
        "--suite",
        "trap",
        "--methods",
        "smc,bon",
        "--runs",
        "2",
        "--budgets",
        "4,8",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "smc·adaptive" in captured.out and "wrote" in captured.err
    for name in ("arena.csv", "arena_matched.csv", "arena.json", "arena.html"):
        assert (out / name).is_file()
    rows = json.loads((out / "arena.json").read_text(encoding="utf-8"))["rows"]
    assert {r["line"] for r in rows} == {"smc·constant", "smc·linear", "smc·adaptive", "bon"}
    assert main(["arena", "--suite", "nope", "--out", str(out)]) == 2
    assert "unknown suites" in capsys.readouterr().err


def test_the_run_summary_shows_token_forwards(capsys):
    from powersmc_core.cli.main import main

    assert main(["run", "--model", "toy-trap", "--n-particles", "4"]) == 0
    assert "forwards     " in capsys.readouterr().err


# ---- the app ---------------------------------------------------------------------------------
def test_the_arena_page_runs_under_the_demo_caps(monkeypatch, fresh_app_state):
    from streamlit.testing.v1 import AppTest

    from explorer import session_keys as keys
    from explorer.limits import global_limiter

    monkeypatch.setenv("POWERSMC_DEMO", "1")
    seen: list[int] = []  # slots held each time a sampler starts on a toy
    start = ToyLM.start

    def counted(self, prompt, n):
        seen.append(global_limiter().stats()["active"])
        return start(self, prompt, n)

    monkeypatch.setattr(ToyLM, "start", counted)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("app_pages/arena.py").run()
    assert not at.exception
    at.multiselect(key="arena_suites").set_value(["trap"])
    at.multiselect(key="arena_methods").set_value(["smc", "bon"])
    at.number_input(key="arena_runs").set_value(500)
    at.number_input(key="arena_n_max").set_value(256)
    at.run()
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert "runs per point must be in [2, 50]; got 500; using 50" in warnings
    assert "N must be in [1, 32]; got 256; using 32" in warnings
    seen.clear()
    at.button(key="arena_run").click().run()
    assert seen and set(seen) == {1}  # every sampler ran inside the visitor's one slot
    assert global_limiter().stats()["active"] == 0  # and the slot was given back
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    ((settings, result),) = at.session_state[keys.ARENA_LAST].items()
    assert settings.runs == 50 and max(result.frame["budget"]) == 32
    assert set(result.frame["line"]) == {"smc·constant", "smc·linear", "smc·adaptive", "bon"}
    assert len(at.get("plotly_chart")) == 1 and len(at.dataframe) >= 1
