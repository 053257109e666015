"""LiveSession: the Live SMC run lifecycle (start, supersede, stop, finish) written once."""

from __future__ import annotations

from explorer import history
from explorer import session_keys as keys
from explorer.gate import Gate
from explorer.live_session import LiveSession
from explorer.settings import DemoSettings
from powersmc_core.models.loading import load_model

NAME = "toy-random:3,8,0"


def admission():
    requested = {"alpha": 4.0, "n_particles": 4, "max_new_tokens": 4, "seed": 1}
    return Gate(DemoSettings()).live(load_model(NAME), NAME, requested, [], "(empty)", "EOS only")


def test_stop_keeps_the_decoded_part_and_nothing_before_the_first_token():
    state: dict = {}
    session = LiveSession(state)
    assert session.stop() is None and session.active is None and session.last is None
    session.start(admission())
    assert session.stop().records == [] and keys.LIVE_ACTIVE not in state
    assert session.last is None and not history.history(state)
    run = admission()
    session.start(run)
    run.live.step()
    entry = session.stop()
    assert entry.status == "stopped" and len(entry.records) == 1
    assert session.last is entry and history.history(state) == [entry]


def test_a_new_run_supersedes_one_in_flight_and_finish_keeps_it():
    state: dict = {}
    session = LiveSession(state)
    first, second = admission(), admission()
    session.start(first)
    session.start(second)  # nothing decoded yet: the first leaves no trace
    assert session.active is second and not history.history(state)
    second.live.step()
    third = admission()
    session.start(third)  # a run with records is kept in history, not as the last run
    assert [e.run_id for e in history.history(state)] == [second.live.run_id]
    assert session.last is None
    for _ in third.live.updates():
        pass
    entry = session.finish()
    assert entry.status == "finished" and session.active is None and session.last is entry
    assert history.history(state)[0] is entry
