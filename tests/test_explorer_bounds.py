"""Uploads bound the work they cause: the exact traces that pinned a CPU core, crashed the
Runs page or poisoned a session's history (issue 13, finding 1 and 4), and the bounds.

* N = 10,000 in one step: refused in demo mode (the demo's cap on N is named), replayed
  in full mode with a table of the top 50 and "and 9,950 more".
* N = 240,000: refused in demo mode with a message naming the cap.
* log W = 800: refused (log-weights must be normalised).
* reference "42" and a text ``\\boxed{7…7}`` of 5,000 digits: the Runs page renders.
* The cost of a page's figures is bounded by the trace caps: counted in cells and Plotly
  traces (no timing assertions); parsed memory is a stated multiple of the file size.
"""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer import history
from explorer.gate import Gate, TraceError
from explorer.settings import DEMO_TRACE_LIMITS, DemoSettings, demo_settings
from powersmc_core.engine.records import StepRecord
from powersmc_core.io.trace import dumps_trace
from powersmc_core.plotting import live as charts

DEMO = demo_settings({"POWERSMC_DEMO": "1"})
FULL = DemoSettings()
APP = str(Path(__file__).resolve().parents[1] / "app.py")


def records(n: int, steps: int = 1, text: str | None = None, seed: int = 0) -> list[StepRecord]:
    """A valid synthetic run of ``steps`` steps and ``n`` particles (normalised weights)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(1, steps + 1):
        log_w = rng.normal(size=n)
        log_w -= np.log(np.exp(log_w).sum())
        idx = tuple(int(i) for i in rng.integers(0, n, n))
        out.append(
            StepRecord(
                step=t,
                alpha=2.0,
                tau=0.5,
                catch_up=0.0,
                tokens=tuple(int(x) for x in rng.integers(0, 5, n)),
                log_weights=tuple(log_w.tolist()),
                log_increment=(0.0,) * n,
                renyi=tuple(rng.random(n).tolist()),
                log_p=tuple((-t * rng.random(n)).tolist()),
                finished=(t == steps,) * n,
                ess=n / 2,
                resampled=t % 2 == 0,
                ancestors=idx,
                roots=idx,
                n_lineages=1,
                n_unique_ancestors=1,
                log_z=-1.0,
                elapsed=0.01 * t,
                texts=tuple(text or "ab" for _ in range(n))
                if text is not None or t == steps
                else None,
                done=t == steps,
            )
        )
    return out


def trace_bytes(recs: list[StepRecord], **meta) -> bytes:
    n = recs[0].n_particles
    config = {"alpha": 2.0, "n_particles": n, "max_new_tokens": max(len(recs), 1)}
    return dumps_trace(recs, config, meta={"model": "toy-trap", "prompt": "p", **meta}).encode()


def test_n_10000_is_refused_in_demo_mode_naming_the_cap():
    data = trace_bytes(records(10_000))
    with pytest.raises(TraceError, match=f"the limit is {DEMO_TRACE_LIMITS.max_particles}"):
        Gate(DEMO).upload(data, "wide.jsonl")


def test_n_10000_replays_in_full_mode_with_a_bounded_table():
    entry = Gate(FULL).upload(trace_bytes(records(10_000)), "wide.jsonl")
    table = charts.particle_table(entry.records[-1], top_k=50)
    assert len(table.frame) == 50 and table.more_caption == "and 9,950 more particles"
    figures = charts.live_figures(entry.records, 0.5, 2.0, heavy=True)
    # One Plotly trace per series, never one per particle (it was 2 per particle: 20,000).
    assert sum(len(f.data) for f in figures.values()) < 300


def test_n_240000_is_refused_in_demo_mode_naming_the_cap():
    # The file: one step, 240,000 particles (6 MB written this way). The cap on N
    # holds whatever the byte cap is (an operator may raise POWERSMC_DEMO_MAX_UPLOAD_MB).
    n = 240_000
    step = {
        "kind": "step",
        **json.loads(records(1)[0].to_json()),
    }
    for name in ("tokens", "log_increment", "renyi", "log_p", "ancestors", "roots"):
        step[name] = [0] * n
    step["finished"] = [False] * n
    step["log_weights"] = [-12.388] * n
    step["texts"] = None
    header = trace_bytes(records(1)).split(b"\n", 1)[0]
    data = header + b"\n" + json.dumps(step, separators=(",", ":")).encode()
    roomy = replace(DEMO, max_upload_bytes=8 * 2**20)
    assert len(data) < roomy.max_upload_bytes
    with pytest.raises(TraceError, match="240000 particles; the limit is 1024"):
        Gate(roomy).upload(data, "huge.jsonl")


def test_log_weight_800_is_refused_with_a_message():
    recs = records(4)
    data = (
        trace_bytes(recs)
        .decode()
        .replace(f'"log_weights": [{recs[0].log_weights[0]!r}', '"log_weights": [800.0', 1)
    )
    assert '"log_weights": [800.0' in data
    for settings in (DEMO, FULL):
        with pytest.raises(TraceError, match="normalised"):
            Gate(settings).upload(data.encode(), "w.jsonl")


def test_every_trace_within_the_demo_caps_builds_figures_of_bounded_size():
    """The figures' work is bounded by the caps: at the widest and the longest allowed
    shapes, no chart holds more than steps × N cells or more than a few hundred traces."""
    caps = DEMO_TRACE_LIMITS
    for n, steps in ((caps.max_particles, caps.max_cells // caps.max_particles), (50, 2000)):
        assert n <= caps.max_particles and steps <= caps.max_steps and n * steps <= caps.max_cells
        recs = records(n, steps)
        figures = charts.live_figures(recs, 0.5, 2.0, heavy=True)
        assert sum(len(f.data) for f in figures.values()) < 300
        heat = figures["heatmap"].data[0]
        assert np.asarray(heat.z).size <= caps.max_cells
        assert len(charts.particle_table(recs[-1], top_k=50).frame) == 50


def test_parsed_trace_memory_is_a_bounded_multiple_of_the_file_size():
    data = trace_bytes(records(32, 96))
    tracemalloc.start()
    try:
        entry = Gate(DEMO).upload(data, "run.jsonl")
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # docs/deploy.md: parsing peaks below 6x the file size and keeps below 3x of it.
    assert peak < 6 * len(data) and current < 3 * len(data)
    assert history.entry_bytes(entry) < 3 * len(data)


def test_the_session_history_keeps_a_bounded_amount_of_parsed_records():
    state: dict = {}
    big = Gate(FULL).upload(trace_bytes(records(1000, 100)), "big.jsonl")
    size = history.entry_bytes(big)
    budget = 3 * size
    for i in range(6):
        big.run_id = f"run{i}"
        history.remember(state, history.RunEntry(**{**big.__dict__}), budget=budget)
    kept = history.history(state)
    assert len(kept) == 3 and sum(history.entry_bytes(e) for e in kept) <= budget
    assert [e.run_id for e in kept] == ["run5", "run4", "run3"]  # the newest are kept


def test_a_5000_digit_boxed_answer_never_poisons_the_runs_page(monkeypatch, tmp_path):
    monkeypatch.delenv("POWERSMC_DEMO", raising=False)  # full mode: the demo refuses the text
    monkeypatch.setenv("POWERSMC_DATA_DIR", str(tmp_path))
    recs = records(4, 2, text="\\boxed{" + "7" * 5000 + "}")
    data = trace_bytes(recs, reference="42")
    with pytest.raises(TraceError, match="longer than 4,000 characters"):
        Gate(DEMO).upload(data, "boxed.jsonl")
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["model_choice"] = "toy-trap"
    at.run()
    at.switch_page("app_pages/runs.py").run()
    at.file_uploader(key="runs_upload").set_value(("boxed.jsonl", data, "application/jsonl")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Loaded boxed" in s.value for s in at.success), [e.value for e in at.error]
    at.run()  # every later visit renders too
    assert not at.exception and len(at.get("plotly_chart")) == 7
    row = history.safe_summary(at.session_state["run_history"][0])
    assert row["correct"] is False


def test_an_entry_whose_summary_fails_still_lists_and_the_rest_summarise(monkeypatch):
    good = Gate(FULL).upload(trace_bytes(records(4, 2)), "good.jsonl")
    bad = Gate(FULL).upload(trace_bytes(records(4, 2), run_id="bad00001"), "bad.jsonl")

    def boom(text, reference, toy):
        if reference == "boom":
            raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")
        return None, None

    monkeypatch.setattr(history, "grade", boom)
    bad.reference = "boom"
    frame = history.summary_frame([good, bad])
    assert list(frame["run"]) == [good.run_id, "bad00001"]
    assert "summary failed: ValueError" in frame["status"].iloc[1]
