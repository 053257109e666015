"""One session's memory (issue 19, finding 5): what it holds is measured from what is
really held (raw uploads, parsed runs, cached figures), one budget bounds the sum, a file
uploaded six times is held once, older runs are dropped (and the visitor told) to make
room, and an upload that cannot fit alone is refused with a message."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np
import plotly.io
import pytest
from streamlit.testing.v1 import AppTest

from explorer import history, replay, session_memory
from explorer import session_keys as keys
from explorer.figure_cache import FigureCache, figure_bytes
from explorer.gate import Gate
from explorer.settings import DemoSettings
from powersmc_core.engine.records import StepRecord
from powersmc_core.io.trace import dumps_trace
from powersmc_core.plotting import live as charts

APP = str(Path(__file__).resolve().parents[1] / "app.py")
RUNS = "app_pages/runs.py"
FULL = DemoSettings()


def records(
    n: int, steps: int, text: str | None = None, seed: int = 0, vocab: int = 5
) -> list[StepRecord]:
    """A valid synthetic run (normalised weights); ``text``: every particle's text."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(1, steps + 1):
        log_w = rng.normal(size=n)
        log_w -= np.log(np.exp(log_w).sum())
        idx = tuple(int(i) for i in rng.integers(0, n, n))
        out.append(
            StepRecord(
                step=t, alpha=2.0, tau=0.5, catch_up=0.0,
                tokens=tuple(int(x) for x in rng.integers(0, vocab, n)),
                log_weights=tuple(log_w.tolist()), log_increment=tuple(rng.random(n).tolist()),
                renyi=tuple(rng.random(n).tolist()), log_p=tuple((-t * rng.random(n)).tolist()),
                finished=(t == steps,) * n, ess=n / 2, resampled=t % 2 == 0, ancestors=idx,
                roots=idx, n_lineages=1, n_unique_ancestors=1, log_z=-1.0, elapsed=0.01 * t,
                texts=None if text is None else tuple(f"{text} {i}" for i in range(n)),
                done=t == steps,
            )
        )  # fmt: skip
    return out


def trace(n: int, steps: int, seed: int = 0, text: str | None = None, vocab: int = 5) -> bytes:
    """A trace file without a run id (each upload of it would get a fresh one)."""
    config = {"alpha": 2.0, "n_particles": n, "max_new_tokens": steps}
    recs = records(n, steps, text, seed, vocab)
    return dumps_trace(recs, config, meta={"model": "toy-trap", "prompt": f"p{seed}"}).encode()


class Upload:
    """Streamlit's UploadedFile as the accounting sees it: an id, a size, the bytes."""

    def __init__(self, data: bytes, file_id: str = "f1") -> None:
        self.data, self.size, self.file_id = data, len(data), file_id

    def getvalue(self) -> bytes:
        return self.data


# ---- the accounting (pure) ---------------------------------------------------------------
def test_held_counts_raw_uploads_parsed_runs_and_cached_figures_each_once():
    data = trace(8, 6)
    entry = Gate(FULL).upload(data, "a.jsonl")
    cache = FigureCache()
    figures = cache.get(("replay", entry.cache_key, 6), lambda: charts.live_figures(entry.records))
    state = {
        "runs_upload": Upload(data),
        keys.HISTORY: [entry],
        keys.LIVE_LAST: entry,  # the same run in two places is held once
        keys.FIGURE_CACHE: cache,
        "unrelated": 123,
    }
    held = session_memory.held(state)
    assert held.uploads == len(data)
    assert held.records == history.entry_bytes(entry) > 0
    assert held.figures == cache.nbytes == sum(figure_bytes(f) for f in figures.values()) > 0
    assert held.total == held.uploads + held.records + held.figures
    assert session_memory.held({}).total == 0


@pytest.mark.parametrize(
    ("n", "steps", "text", "vocab"),
    [(32, 96, None, 5), (32, 96, None, 49_152), (256, 40, "a decoded text", 5), (128, 40, "x", 5)],
)
def test_entry_bytes_measures_what_a_parsed_trace_really_holds(n, steps, text, vocab):
    data = trace(n, steps, text=text, vocab=vocab)
    gc.collect()
    tracemalloc.start()
    try:
        entry = Gate(FULL).upload(data, "t.jsonl")
        gc.collect()
        really, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 0.9 < history.entry_bytes(entry) / really < 1.1


def test_figure_bytes_is_a_fair_estimate_of_a_figure():
    recs = records(64, 30, text="t")
    charts.live_figures(recs, 0.5, 2.0, heavy=True)  # first call: imports and caches
    gc.collect()
    tracemalloc.start()
    try:
        figures = charts.live_figures(recs, 0.5, 2.0, heavy=True)
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    estimate = sum(figure_bytes(f) for f in figures.values())
    as_json = sum(len(plotly.io.to_json(f, validate=False)) for f in figures.values())
    # Against the memory the figures really hold; the JSON is smaller (each figure's
    # layout template is a tree of small dicts and strings), so the estimate is above it.
    assert 0.5 < estimate / held < 2
    assert estimate > as_json


def test_make_room_evicts_cached_figures_first_then_the_oldest_run_and_says_so():
    gate = Gate(FULL)
    old, mid, new = (gate.upload(trace(16, 20, seed=s), f"{s}.jsonl") for s in range(3))
    state: dict = {keys.HISTORY: [new, mid, old], keys.LIVE_LAST: old}
    cache = FigureCache()
    state[keys.FIGURE_CACHE] = cache
    cache.get(("replay", new.cache_key, 20), lambda: charts.live_figures(new.records))
    runs = sum(history.entry_bytes(e) for e in (old, mid, new))
    # Figures alone make room: no run is dropped.
    assert session_memory.make_room(state, budget=runs) == [] and len(cache) == 0
    assert history.history(state) == [new, mid, old] and not session_memory.pop_notices(state)
    cache.get(("replay", old.cache_key, 20), lambda: charts.live_figures(old.records))
    dropped = session_memory.make_room(state, budget=runs - 1, keep=new)
    assert dropped == [old] and history.history(state) == [new, mid] and len(cache) == 0
    assert state[keys.LIVE_LAST] is None  # the Live page's copy is the same run: gone too
    [notice] = session_memory.pop_notices(state)
    assert f"Run {old.run_id}" in notice and "memory budget" in notice
    assert session_memory.pop_notices(state) == []  # told once
    # Never the run being added, even when it alone is over the budget.
    assert session_memory.make_room(state, budget=1, keep=new) == [mid]
    assert history.history(state) == [new]


def test_figures_make_room_among_figures_only_and_otherwise_go_uncached():
    entry = Gate(FULL).upload(trace(16, 20), "a.jsonl")
    cache = FigureCache()
    state: dict = {keys.HISTORY: [entry], keys.FIGURE_CACHE: cache}
    cache.get("old", lambda: charts.live_figures(entry.records))
    size = cache.nbytes
    runs = history.entry_bytes(entry)
    room = session_memory.figure_room(state, budget=runs + size)
    assert room(size) and len(cache) == 0  # the older set made room for the new one
    assert not session_memory.figure_room(state, budget=runs + size - 1)(size)
    assert history.history(state) == [entry]  # figures never push a run out


# ---- the upload path (explorer.replay.import_upload) ------------------------------------
def test_the_same_file_uploaded_six_times_is_held_once():
    gate, state = Gate(FULL), {}
    data = trace(32, 40)
    for i in range(6):
        state["runs_upload"] = Upload(data, file_id=f"f{i}")  # the widget holds the latest
        imported = replay.import_upload(gate, state, state["runs_upload"], f"run{i}.jsonl")
        assert imported.fresh == (i == 0)
    [entry] = history.history(state)
    held = session_memory.held(state)
    assert held.total == len(data) + history.entry_bytes(entry)


def test_an_upload_that_cannot_fit_alone_is_refused_before_or_after_parsing():
    data = trace(32, 40)
    entry = Gate(FULL).upload(data, "x.jsonl")
    need = len(data) + history.entry_bytes(entry)
    for budget in (len(data) - 1, need - 1):  # the raw file alone; file plus records
        gate, state = Gate(DemoSettings(session_max_bytes=budget)), {}
        with pytest.raises(session_memory.SessionFull, match="one session may hold"):
            replay.import_upload(gate, state, Upload(data), "x.jsonl")
        assert history.history(state) == []
    gate = Gate(DemoSettings(session_max_bytes=need))
    assert replay.import_upload(gate, {}, Upload(data), "x.jsonl").fresh


# ---- through the page (AppTest, budget from POWERSMC_SESSION_MAX_MB) ----------------------
@pytest.fixture
def small_budget(monkeypatch, fresh_app_state):
    monkeypatch.setenv("POWERSMC_DEMO", "1")
    monkeypatch.setenv("POWERSMC_SESSION_MAX_MB", "1")


def runs_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["model_choice"] = "toy-trap"
    at.run()
    at.switch_page(RUNS).run()
    return at


def upload(at: AppTest, name: str, data: bytes) -> None:
    at.file_uploader(key="runs_upload").set_value((name, data, "application/jsonl")).run()
    assert not at.exception, [e.value for e in at.exception]


def held_now(at: AppTest) -> int:
    return session_memory.held(at.session_state.to_dict()).total


def test_the_page_holds_one_copy_of_a_file_uploaded_six_times(small_budget):
    at = runs_page()
    data = trace(32, 40)
    for i in range(6):
        upload(at, f"same{i}.jsonl", data)
        assert held_now(at) <= 2**20
    assert len(at.session_state[keys.HISTORY]) == 1
    assert any("already loaded: one copy kept" in s.value for s in at.success)


def test_the_page_drops_the_oldest_runs_beyond_the_budget_and_says_so(small_budget):
    at = runs_page()
    names = []
    for seed in range(5):  # each about 0.35 MB held: the budget holds two or three
        upload(at, f"t{seed}.jsonl", trace(32, 40, seed=seed))
        names.append(at.session_state[keys.RUNS_SELECT])
        assert held_now(at) <= 2**20
    kept = [e.run_id for e in at.session_state[keys.HISTORY]]
    assert kept[0] == names[-1] and names[0] not in kept and 2 <= len(kept) < 5
    told = " ".join(w.value for w in at.warning)
    assert "was dropped from this session to stay within its 1 MB memory budget" in told
    at.run()  # told once
    assert not any("was dropped" in w.value for w in at.warning)


def test_the_page_refuses_an_upload_larger_than_the_budget(small_budget, monkeypatch):
    reads = []
    upload_once = Gate.upload
    monkeypatch.setattr(Gate, "upload", lambda *a: reads.append(1) or upload_once(*a))
    at = runs_page()
    data = trace(64, 100)  # about 0.65 MB on disk, 1.4 MB parsed
    upload(at, "big.jsonl", data)
    for _ in range(2):  # reruns keep telling, without parsing the file again
        errors = [e.value.replace("\\", "") for e in at.error]  # unescape the markdown
        assert any("big.jsonl needs about" in e and "session may hold 1 MB" in e for e in errors)
        assert not at.session_state[keys.HISTORY] if keys.HISTORY in at.session_state else True
        at.run()
    assert len(reads) == 1
