"""The policy gate without Streamlit: caps, queue slot, run-time cap, uploads (toy models)."""

from __future__ import annotations

import pytest

from explorer.gate import Gate, InputError, LimitError, TraceError
from explorer.limits import RunLimiter
from explorer.settings import demo_settings
from powersmc_core.models.loading import load_model

DEMO = demo_settings({"POWERSMC_DEMO": "1"})
FULL = demo_settings({})


class TickClock:
    """A limiter clock that moves one second per reading (no wall time involved)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def gate(settings=DEMO, max_run_s: float = 1e9, clock=None, visitor: str = "v1") -> Gate:
    limiter = RunLimiter(
        max_concurrent=1, max_queue=1, max_run_s=max_run_s, **({"clock": clock} if clock else {})
    )
    return Gate(settings, limiter=limiter, visitor=visitor)


@pytest.fixture(scope="module")
def trap():
    return load_model("toy-trap")


def test_over_cap_values_are_clamped_with_one_note_each(trap):
    admitted = gate().compare(
        trap,
        "toy-trap",
        {"alpha": 4.0, "n_particles": 200, "max_new_tokens": 2000, "seed": 0},
        [],
        ["smc", "mh"],
        50,
        "EOS only",
    )
    assert admitted.config.n_particles == 32 and admitted.config.max_new_tokens == 96
    assert admitted.notes == (
        "N must be in [1, 32]; got 200; using 32",
        "max new tokens must be in [1, 96]; got 2000; using 96",
        "MH steps must be in [0, 8]; got 50; using 8",
    )


def test_full_mode_keeps_values_within_its_own_caps(trap):
    admitted = gate(FULL).compare(
        trap, "toy-trap", {"n_particles": 200, "max_new_tokens": 2000}, [], ["smc"], 50, "EOS only"
    )
    assert admitted.notes == () and admitted.config.n_particles == 200


@pytest.mark.parametrize(
    ("requested", "methods", "message"),
    [
        ({"alpha": 0.0}, ["smc"], r"α must be in \[0\.5, 8\]; got 0"),
        ({"n_particles": 0}, ["smc"], r"N must be in \[1, 32\]; got 0"),
        ({}, ["nope"], "unknown methods"),
        ({}, [], "unknown methods"),
    ],
)
def test_values_no_cap_can_fix_are_refused(trap, requested, methods, message):
    with pytest.raises(InputError, match=message):
        gate().compare(trap, "toy-trap", requested, [], methods, 1, "EOS only")


def test_admission_starts_nothing_and_running_holds_the_one_slot(trap):
    g = gate()
    admitted = g.live(trap, "toy-trap", {"n_particles": 8}, [], "(empty)", "EOS only")
    assert admitted.live.records == [] and g.limiter.stats()["active"] == 0
    with g.running(admitted) as run:
        held = [g.limiter.stats()["active"] for _ in run.events()]
        with pytest.raises(LimitError, match="already in progress"), g.running(admitted):
            pass  # the same visitor cannot start a second run meanwhile
    assert held and set(held) == {1}
    assert g.limiter.stats()["active"] == 0 and admitted.finish().status == "finished"


class Leave(Exception):
    """What Streamlit's rerun does to a waiting page: an exception from ``on_wait``."""


def test_a_waiting_visitor_is_told_the_queue_position_and_leaves_cleanly(trap):
    g = gate(visitor="second")
    admitted = g.live(trap, "toy-trap", {"n_particles": 4}, [], "(empty)", "EOS only")
    shown: list[str] = []

    def on_wait(position: int, waited: float) -> None:
        shown.append(g.queue_message(position, waited))
        raise Leave

    with g.limiter.slot("first"), pytest.raises(Leave), g.running(admitted, on_wait):
        pass  # never reached: the only slot is held by the first visitor
    assert shown and shown[0].startswith("Waiting for a free slot: you are #1 in the queue")
    assert g.limiter.stats() | {"reclaimed": 0} == {
        "active": 0,
        "alive": 0,
        "waiting": 0,
        "max_concurrent": 1,
        "max_queue": 1,
        "reclaimed": 0,
    }
    assert admitted.live.records == []  # nothing was decoded while waiting


def test_compare_stops_within_one_step_at_the_run_time_cap(trap):
    clock = TickClock()  # every deadline check moves the clock by 1 s
    g = gate(max_run_s=3.0, clock=clock)
    admitted = g.compare(
        trap, "toy-trap", {"n_particles": 4, "max_new_tokens": 2}, [], ["smc"] * 5, 0, "EOS only"
    )
    with g.running(admitted) as run:
        results = list(run.events())
    assert run.timed_out
    # Each smc run streams at most 2 records (2 checks): the cap of 3 ticks after the
    # slot was taken stops the second method, never a whole method later.
    assert len(results) <= 1


def test_theory_budget_is_clamped_and_validated():
    trap = load_model("toy-trap")
    admitted, settings = gate().theory(trap, "toy-trap", 4.0, 256, 500, 256, 0)
    assert (settings.n_particles, settings.runs, settings.n_max) == (32, 50, 32)
    assert "runs per point must be in [2, 50]; got 500; using 50" in admitted.notes
    with pytest.raises(InputError, match="runs per point must be in"):
        gate().theory(trap, "toy-trap", 4.0, 16, 1, 64, 0)


def test_uploads_use_the_mode_cap():
    big = b" " * (6 * 2**20)
    with pytest.raises(TraceError, match="the upload limit is 5 MB"):
        gate().upload(big, "big.jsonl")
    with pytest.raises(TraceError, match="trace is empty"):
        gate(FULL).upload(big, "big.jsonl")  # under the full app's 20 MB: parsed, and refused


def test_a_task_set_with_mh_stops_within_one_proposal_of_the_cap(trap, monkeypatch):
    # The cap is checked after every MH proposal, not between graded runs: with the cap
    # already past, the job stops at its first checkpoint, before any graded row exists.
    from explorer.gate import GatedRun

    checks = []
    original = GatedRun.checkpoint

    def counted(self: GatedRun) -> None:
        checks.append(self.slot.time_left())
        original(self)

    monkeypatch.setattr(GatedRun, "checkpoint", counted)
    g = gate(max_run_s=0.0)
    admitted = g.task_set(
        trap, "toy-trap", {"alpha": 4.0, "max_new_tokens": 4}, ["mh"], 8, 3, "toy", 1
    )
    with g.running(admitted) as run:
        events = list(run.events())
    assert events == [] and run.timed_out and run.outcome == "timed out"
    assert len(checks) == 1  # the first proposal's record, then stop

    monkeypatch.setattr(GatedRun, "checkpoint", original)
    g = gate()
    with g.running(g.task_set(trap, "toy-trap", {}, ["mh"], 2, 1, "toy", 1)) as run:
        (rows,) = list(run.events())
    assert len(rows.rows) == 1 and run.outcome == "finished"


def test_every_run_writes_a_start_and_an_end_line_and_a_refusal_is_logged(trap, caplog):
    caplog.set_level("INFO", logger="explorer.gate")
    g = gate(visitor="visitor:abc")
    g.address = "203.0.113.5"
    admitted = g.live(trap, "toy-trap", {"n_particles": 4, "max_new_tokens": 3}, [], "", "EOS only")
    with g.running(admitted) as run:
        list(run.events())
        other = Gate(DEMO, limiter=g.limiter, visitor="visitor:abc")
        with pytest.raises(LimitError), other.running(admitted):
            pass
    lines = [r.getMessage() for r in caplog.records]
    started = next(line for line in lines if line.startswith("run started:"))
    ended = next(line for line in lines if line.startswith("run ended:"))
    refused = next(line for line in lines if line.startswith("run refused:"))
    for line in (started, ended, refused):
        assert "visitor=" in line and "address=" in line and "kind=live" in line
        assert "visitor:abc" not in line and "203.0.113.5" not in line  # hashes only
    assert "N=4 tokens=3 cap=60s" in started
    assert "outcome=finished duration=" in ended and "reason=SessionBusy" in refused


def test_a_run_whose_browser_went_away_stops_at_its_next_step(trap, monkeypatch, caplog):
    caplog.set_level("INFO", logger="explorer.gate")
    steps = []
    monkeypatch.setattr("explorer.gate.session_connected", lambda session: False)
    g = gate()
    model = load_model("toy-random:4,8,1")  # 8 steps unless stopped
    requested = {"n_particles": 4, "max_new_tokens": 8}
    admitted = g.live(model, "toy-random:4,8,1", requested, [], "", "EOS only")
    with g.running(admitted) as run:
        for event in run.events():
            steps.append(event)
    assert len(steps) <= 1 and run.disconnected and run.outcome == "disconnected"
    assert any("outcome=disconnected" in r.getMessage() for r in caplog.records)
    assert g.limiter.stats()["active"] == 0
