"""Run limiter: concurrency cap, FIFO queue with visible positions, one run per session
(rapid repeated clicks), queue bound and timeout, run-time cap, reclaiming dead slots.

Timing-based checks use an injected clock where possible; the thread tests wait on
events with generous timeouts so a loaded CI machine slows them down but cannot
make them fail.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from explorer.limits import (
    AddressBusy,
    QueueFull,
    QueueTimeout,
    RunLimiter,
    SessionBusy,
    current_session_id,
    global_limiter,
    reset_global_limiter,
)
from explorer.settings import demo_settings

WAIT = 10.0  # seconds: upper bound for any event in these tests


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_at_most_max_concurrent_hold_a_slot():
    limiter = RunLimiter(max_concurrent=2, max_queue=10, queue_timeout_s=WAIT)
    lock = threading.Lock()
    inside, peak = 0, 0

    def run(i: int) -> None:
        nonlocal inside, peak
        with limiter.slot(f"s{i}", poll_s=0.01):
            with lock:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.02)
            with lock:
                inside -= 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(run, range(8)))
    assert peak == 2
    assert limiter.stats()["active"] == 0 and limiter.stats()["waiting"] == 0


def test_queue_is_fifo_and_reports_positions():
    limiter = RunLimiter(max_concurrent=1, max_queue=10, queue_timeout_s=WAIT)
    release = threading.Event()
    order: list[str] = []
    positions: dict[str, set[int]] = {"b": set(), "c": set()}

    def holder() -> None:
        with limiter.slot("a"):
            order.append("a")
            release.wait(WAIT)

    def waiter(name: str) -> None:
        with limiter.slot(name, on_wait=lambda pos, _: positions[name].add(pos), poll_s=0.01):
            order.append(name)

    first = threading.Thread(target=holder)
    first.start()
    while limiter.stats()["active"] == 0:
        time.sleep(0.001)
    threads = []
    for name in ("b", "c"):
        threads.append(threading.Thread(target=waiter, args=(name,)))
        threads[-1].start()
        while limiter.stats()["waiting"] < len(threads):
            time.sleep(0.001)
    deadline = time.monotonic() + WAIT
    while not (positions["b"] and positions["c"]) and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    for t in [first, *threads]:
        t.join(WAIT)
    assert order == ["a", "b", "c"]
    assert positions["b"] == {1} and 2 in positions["c"]


def test_rapid_repeated_clicks_get_one_run():
    # 20 "clicks" of one session at once: exactly one runs, the others are told why.
    limiter = RunLimiter(max_concurrent=4, max_queue=10, queue_timeout_s=WAIT)
    gate = threading.Barrier(20)
    all_refused = threading.Event()
    results: list[str] = []
    lock = threading.Lock()

    def click() -> None:
        gate.wait(WAIT)
        try:
            with limiter.slot("same-tab"):
                all_refused.wait(WAIT)  # hold the slot until every other click was refused
                results.append("ran")
        except SessionBusy as err:
            assert "already in progress" in str(err)
            with lock:
                results.append("busy")
                if results.count("busy") == 19:
                    all_refused.set()

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda _: click(), range(20)))
    assert results.count("ran") == 1 and results.count("busy") == 19
    with limiter.slot("same-tab"):  # and the session can run again afterwards
        pass


def test_queue_full_is_refused_at_once():
    limiter = RunLimiter(max_concurrent=1, max_queue=0, queue_timeout_s=WAIT)
    with limiter.slot("a"), pytest.raises(QueueFull, match="busy"), limiter.slot("b"):
        pass
    with limiter.slot("b"):  # free again
        pass


def test_queue_timeout_leaves_the_queue_clean():
    limiter = RunLimiter(max_concurrent=1, max_queue=5, queue_timeout_s=0.1)
    with limiter.slot("a"):
        with pytest.raises(QueueTimeout, match="queue"), limiter.slot("b", poll_s=0.01):
            pass
        assert limiter.stats()["waiting"] == 0
    with limiter.slot("b"):
        pass


def test_exception_while_waiting_leaves_the_queue():
    # Streamlit raises its stop/rerun exceptions from the page's on_wait drawing call.
    limiter = RunLimiter(max_concurrent=1, max_queue=5, queue_timeout_s=WAIT)

    class Stop(Exception):
        pass

    def boom(position: int, waited: float) -> None:
        raise Stop

    with limiter.slot("a"):
        with pytest.raises(Stop), limiter.slot("b", on_wait=boom, poll_s=0.01):
            pass
        assert limiter.stats()["waiting"] == 0
    with limiter.slot("b"):
        pass


def test_run_time_cap_and_bounded_iteration():
    clock = FakeClock()
    limiter = RunLimiter(max_concurrent=1, max_run_s=10.0, clock=clock)

    def steps():
        for i in range(100):
            clock.now += 1.0  # each step takes one second
            yield i

    with limiter.slot("a") as slot:
        seen = list(slot.bounded(steps()))
    assert seen == list(range(10)) and slot.timed_out

    clock.now = 100.0
    with limiter.slot("a", run_age_s=8.0) as slot:  # a resumed run keeps its age
        assert slot.time_left() == pytest.approx(2.0)
        assert len(list(slot.bounded(steps()))) == 2


def test_a_live_job_past_its_cap_keeps_its_slot_and_a_dead_holder_frees_it():
    clock = FakeClock()
    limiter = RunLimiter(max_concurrent=1, max_queue=5, max_run_s=5.0, grace_s=5.0, clock=clock)
    entered, finish = threading.Event(), threading.Event()
    held = []

    def holder() -> None:  # takes a slot and never releases it, then dies when told
        held.append(limiter.slot("dead").__enter__())
        entered.set()
        finish.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert entered.wait(10)
    clock.now = 100.0  # far past deadline + grace, but the job's thread is alive
    assert limiter.stats() | {"max_queue": 0} == {
        "active": 1,
        "alive": 1,
        "waiting": 0,
        "max_concurrent": 1,
        "max_queue": 0,
        "reclaimed": 0,
    }
    finish.set()
    thread.join(10)
    assert limiter.stats()["active"] == 0 and limiter.stats()["reclaimed"] == 1
    with limiter.slot("next"):
        assert limiter.stats()["active"] == 1
    held[0].__exit__(None, None, None)  # a late release changes nothing
    assert limiter.stats()["active"] == 0


def test_one_address_holds_one_run_and_one_queue_place_whatever_its_visitors():
    limiter = RunLimiter(max_concurrent=2, max_queue=16, runs_per_address=1, queue_per_address=1)
    first = limiter.slot("visitor-1", address="10.0.0.1").__enter__()
    waiter_started = threading.Event()
    outcome: list[str] = []

    def second_visitor_same_address() -> None:
        with limiter.slot(
            "visitor-2", lambda *_: waiter_started.set(), poll_s=0.01, address="10.0.0.1"
        ):
            outcome.append("ran")

    thread = threading.Thread(target=second_visitor_same_address)
    thread.start()
    assert waiter_started.wait(10)  # queued although a global slot is free
    assert limiter.stats()["active"] == 1 and limiter.stats()["waiting"] == 1
    for visitor in ("visitor-3", "session:forged-1", "session:forged-2"):
        with pytest.raises(AddressBusy, match="per network address"):
            limiter.slot(visitor, address="10.0.0.1").__enter__()
    with limiter.slot("visitor-9", address="10.0.0.2"):  # another address passes the waiter
        assert limiter.stats()["active"] == 2
    first.__exit__(None, None, None)
    thread.join(10)
    assert outcome == ["ran"] and limiter.stats()["active"] == 0


def test_invalid_limits():
    with pytest.raises(ValueError):
        RunLimiter(max_concurrent=0)
    with pytest.raises(ValueError):
        RunLimiter(max_concurrent=1, max_queue=-1)


def test_global_limiter_follows_demo_settings(monkeypatch):
    monkeypatch.setenv("POWERSMC_DEMO", "1")
    monkeypatch.setenv("POWERSMC_MAX_CONCURRENT_RUNS", "3")
    reset_global_limiter()
    try:
        limiter = global_limiter()
        assert limiter is global_limiter()
        assert limiter.max_concurrent == 3
        assert limiter.max_run_s == demo_settings().max_run_seconds
    finally:
        reset_global_limiter()
    assert current_session_id() == "no-session"
