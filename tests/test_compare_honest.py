"""The Compare page tells the truth (issue 20, part 3), on toy models.

* timings: the median and min–max of interleaved repeats (round r runs every method
  once), the × plain ratio of medians; one run is labelled as one run, with the load;
* an unfinished completion (cut, or at max new tokens) is never graded;
* each method gets a share of the run-time cap: a slow one (MH) is cut at its share,
  keeps its partial output and says what to change, and the later methods still run;
* Stop (Streamlit's rerun raised at a redraw inside a method) keeps the finished methods
  and the partial one, and the queue slot is free again;
* the log-likelihood chart has horizontal bars and no axis title under its title.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import sys
import threading
import time
from pathlib import Path

import pytest
from streamlit.runtime.scriptrunner_utils.exceptions import RerunException
from streamlit.testing.v1 import AppTest

from explorer import comparison
from explorer import session_keys as keys
from explorer.comparison import CompareSession, Load, MethodDone, timing_stats
from explorer.gate import Gate, InputError
from explorer.limits import RunLimiter
from explorer.settings import demo_settings
from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.records import SMCResult
from powersmc_core.models.loading import load_model
from powersmc_core.plotting.comparison import loglik_per_token_figure, mh_acceptance_figure

DEMO = demo_settings({"POWERSMC_DEMO": "1"})
FULL = demo_settings({})
APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(scope="module")
def trap():
    return load_model("toy-trap")


class Clock:
    """A limiter clock moved by hand (``advance``), never by reading it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def gate(settings=FULL, clock=None, max_run_s: float = 60.0, visitor: str = "v1") -> Gate:
    limiter = RunLimiter(
        max_concurrent=1, max_queue=1, max_run_s=max_run_s, **({"clock": clock} if clock else {})
    )
    return Gate(settings, limiter=limiter, visitor=visitor)


def result(text: str, finished: bool, log_p: float = -2.0) -> SMCResult:
    return SMCResult(
        completions=[[1, 2]],
        weights=[1.0],
        chosen=0,
        log_p=[log_p],
        log_z=math.nan,
        n_resamples=0,
        ess_trace=[],
        finished=[finished],
        n_steps=2,
        elapsed=0.0,
        texts=[text],
    )


def done(method: str, seconds: float, repeat: int = 0, **kw) -> MethodDone:
    return MethodDone(method, kw.pop("result", result("B x", True)), seconds, repeat, 2, **kw)


# ---- timing statistics -------------------------------------------------------------------
def test_timing_stats_are_the_median_and_min_max():
    assert timing_stats([3.0, 1.0, 2.0]) == comparison.Timing(2.0, 1.0, 3.0, 3)
    assert timing_stats([4.0, 1.0, 2.0, 10.0]) == comparison.Timing(3.0, 1.0, 10.0, 4)
    assert timing_stats([5.0]) == comparison.Timing(5.0, 5.0, 5.0, 1)
    nothing = timing_stats([math.nan])
    assert nothing.n == 0 and math.isnan(nothing.median) and math.isnan(nothing.low)


def test_the_table_shows_medians_spread_and_the_ratio_of_medians(trap):
    runs = [
        done("base", 1.0, 0),
        done("smc", 4.0, 0),
        done("base", 3.0, 1),
        done("smc", 5.0, 1),  # one slow base run cannot move the base median far
        done("base", 2.0, 2),
        done("smc", 9.0, 2),
    ]
    frame = comparison.comparison_frame(runs, trap, "B x").set_index("key")
    assert frame.loc["base", "latency [s]"] == 2.0 and frame.loc["smc", "latency [s]"] == 5.0
    assert (frame.loc["smc", "min [s]"], frame.loc["smc", "max [s]"]) == (4.0, 9.0)
    assert frame.loc["smc", "× plain"] == pytest.approx(5.0 / 2.0)
    assert frame.loc["smc", "timed runs"] == 3
    table = comparison.comparison_table(frame.reset_index(), repeats=3)
    assert "latency [s] (median of 3)" in table and "× plain (medians)" in table
    assert list(table["spread [s] (min–max)"]) == ["1.000–3.000", "4.000–9.000"]
    one = comparison.comparison_table(frame.reset_index(), repeats=1)
    assert "latency [s] (one run)" in one and "× plain (one run)" in one
    assert "spread [s] (min–max)" not in one


def test_repeats_are_interleaved_round_by_round_with_the_same_output(trap):
    config = SMCConfig(alpha=4.0, n_particles=4, max_new_tokens=4, seed=1)
    methods = ["base", "smc", "greedy"]
    runs = list(comparison.compare_runs(trap, [], methods, config, 0, repeats=3))
    assert [(d.repeat, d.method) for d in runs] == [(r, m) for r in range(3) for m in methods]
    for method in methods:  # the same seed every repeat: only the time differs
        outputs = {tuple(d.result.chosen_completion) for d in runs if d.method == method}
        assert len(outputs) == 1, method
    frame = comparison.comparison_frame(runs, trap).set_index("key")
    assert (frame["timed runs"] == 3).all()


def test_a_run_budget_leaves_a_reserve_for_the_runs_after_it():
    # Nothing finished yet: an equal share of what is left.
    assert comparison.run_budget(60.0, ["base", "mh", "greedy"], {}) == 20.0
    # After quick runs: MH may use what is left less 1.5 × the expected time of the runs
    # after it (greedy never ran: the median of the finished methods, 2 s; bon its own 4 s).
    spent = {"base": 2.0, "lowtemp": 1.0, "smc": 9.0, "bon": 4.0}
    assert comparison.run_budget(58.0, ["mh", "greedy", "bon"], spent) == 58.0 - 1.5 * (3 + 4)
    # Never less than an equal share, even when the runs after it were slow.
    assert comparison.run_budget(30.0, ["base", "mh"], {"mh": 40.0}) == 15.0
    assert comparison.run_budget(-1.0, ["base"], {"base": 1.0}) == 0.0


def test_repeats_are_clamped_through_the_gate(trap):
    admitted = gate(DEMO).compare(trap, "toy-trap", {}, [], ["base"], 0, "EOS only", 10)
    assert "repeats must be in [1, 3]; got 10; using 3" in admitted.notes
    assert admitted.compare.repeats == 3
    with pytest.raises(InputError, match="repeats must be in"):
        gate(DEMO).compare(trap, "toy-trap", {}, [], ["base"], 0, "EOS only", 0)


def test_the_load_is_read_and_described(monkeypatch):
    text = Load(0.5, 2.25, 2).describe()
    assert "at the start 0.50" in text and "at the end 2.25" in text and "on 2 CPUs" in text

    def unavailable():
        raise OSError("no load average here")

    monkeypatch.setattr(comparison.os, "getloadavg", unavailable)
    assert comparison.load_average() is None
    assert "at the start unknown" in Load(None, None, None).describe()


# ---- never grade an unfinished completion ------------------------------------------------
def test_an_unfinished_completion_is_never_graded(trap):
    # "B x" is the right answer, but the chosen sequence did not end (max new tokens).
    frame = comparison.comparison_frame(
        [done("base", 1.0, result=result("B x", False))], trap, "B x"
    )
    row = frame.iloc[0]
    assert row["answer"] is None and row["correct"] is None and row["status"] == "unfinished"
    table = comparison.comparison_table(frame)
    assert list(table["answer"]) == ["unfinished"] and list(table["correct"]) == ["—"]
    finished = comparison.comparison_frame([done("base", 1.0)], trap, "B x")
    assert bool(finished.iloc[0]["correct"]) is True  # the same text, ended: graded


def test_a_toy_run_cut_at_max_new_tokens_is_not_graded(trap):
    # With 2 tokens every method writes "A x" or "B x" but none has ended by EOS.
    config = SMCConfig(alpha=4.0, n_particles=8, max_new_tokens=2)
    runs = list(comparison.compare_runs(trap, [], ["base", "smc", "mh"], config, 2))
    frame = comparison.comparison_frame(runs, trap, "B x")
    assert set(frame["status"]) == {"unfinished"}
    assert frame["correct"].isna().all() and frame["answer"].isna().all()


# ---- the per-method budget ---------------------------------------------------------------
def slow_mh(clock: Clock, seconds: float = 5.0):
    """A watch that moves the clock as if every MH step took ``seconds`` (others 0.1 s)."""

    def watch(method, repeat, steps, elapsed, budget):
        clock.now += seconds if method == "mh" else 0.1

    return watch


def test_a_slow_method_is_cut_at_its_share_and_keeps_its_output(trap):
    clock = Clock()
    g = gate(DEMO, clock=clock)
    admitted = g.compare(
        trap, "toy-trap", {"n_particles": 4, "max_new_tokens": 8}, [], ["base", "mh", "greedy"],
        8, "EOS only",
    )  # fmt: skip
    admitted.compare.watch = slow_mh(clock)
    with g.running(admitted) as run:
        runs = list(run.events())
    assert not run.timed_out and [d.method for d in runs] == ["base", "mh", "greedy"]
    base, mh, greedy = runs
    assert base.cut is None and greedy.cut is None  # the later method still ran
    # MH's budget: what base left less 1.5 × greedy's expected time (base's, ~0.5 s), more
    # than an equal share (30 s); with 5 s steps it is cut before the next would pass it.
    assert mh.cut == "budget" and 6 < mh.steps < 12
    assert mh.result.chosen_completion  # its chain so far
    assert clock.now < 60.0
    report = admitted.compare.report("finished")
    row = report.frame.set_index("key").loc["mh"]
    assert row["status"] == f"cut at budget ({mh.steps} steps)" and row["correct"] is None
    notes = " ".join(report.notes())
    assert "Cut at its budget of the 60 s run-time cap" in notes and "still ran" in notes
    assert "fewer MH steps" in notes and "without the demo caps" in notes
    traces, _ = report.mh_traces()
    assert all("cut at budget" in name for name in traces)
    assert g.limiter.stats()["active"] == 0


def test_a_method_cut_once_is_not_repeated(trap):
    clock = Clock()
    compared = comparison.Comparison(
        trap, [], ["base", "mh"], SMCConfig(max_new_tokens=8), 8, repeats=3
    )
    compared.watch = slow_mh(clock)
    runs = list(compared.runs(time_left=lambda: 60.0 - clock.now))
    assert [(d.repeat, d.method) for d in runs] == [
        (0, "base"),
        (0, "mh"),
        (1, "base"),
        (2, "base"),
    ]
    assert runs[1].cut == "budget" and all(d.cut is None for d in runs if d.method == "base")


# ---- Stop --------------------------------------------------------------------------------
def press_stop_during(method: str, at_step: int):
    """A watch raising what Streamlit raises at a redraw once Stop was pressed (a rerun)."""

    def watch(m, repeat, steps, elapsed, budget):
        if m == method and steps == at_step:
            raise RerunException(None)

    return watch


def test_stop_keeps_the_finished_methods_and_frees_the_slot(trap):
    g = gate()
    state: dict = {}
    session = CompareSession(state)
    admitted = g.compare(
        trap, "toy-trap", {"max_new_tokens": 8}, [], ["base", "mh", "greedy"], 8, "EOS only",
        reference="B x",
    )  # fmt: skip
    session.start(admitted)
    admitted.compare.watch = press_stop_during("mh", 2)
    with pytest.raises(RerunException), g.running(admitted) as run:
        for _ in run.events():
            pass
    assert g.limiter.stats()["active"] == 0  # the slot was given back on the way out
    report = session.stop()  # the next script run sees the Stop button pressed
    assert keys.COMPARE_ACTIVE not in state and state[keys.COMPARE_LAST] is report
    assert report.status == "stopped"
    assert [(d.method, d.cut) for d in report.runs] == [("base", None), ("mh", "stopped")]
    assert report.runs[1].steps == 2
    assert report.notes()[0] == "Stopped after 1 of 3 methods; the finished ones are shown below."
    frame = report.frame.set_index("key")
    assert frame.loc["mh", "status"] == "stopped (2 steps)" and frame.loc["mh", "correct"] is None
    assert "greedy" not in frame.index
    assert session.stop() is None  # nothing in flight any more


def test_stop_from_the_next_script_run_ends_the_run_still_in_flight(trap):
    """Streamlit's fast rerun runs the Stop script run in a new thread while the last one
    is still inside MH: Stop asks it to end at its next step and waits for its slot."""
    g = gate()
    session = CompareSession({})
    admitted = g.compare(
        trap, "toy-trap", {"max_new_tokens": 8}, [], ["base", "mh", "greedy"], 8, "EOS only"
    )
    session.start(admitted)
    compared = admitted.compare
    in_mh = threading.Event()

    def slow_watch(method, repeat, steps, elapsed, budget):
        if method == "mh":
            in_mh.set()
            time.sleep(0.05)  # 72 MH records: seconds, long after Stop

    compared.watch = slow_watch

    def last_script_run() -> None:
        with compared.held(), g.running(admitted) as run:
            for _ in run.events():
                pass

    thread = threading.Thread(target=last_script_run)
    thread.start()
    assert in_mh.wait(30)
    report = session.stop()  # the Stop script run, meanwhile
    thread.join(30)
    assert not thread.is_alive() and g.limiter.stats()["active"] == 0
    assert [(d.method, d.cut) for d in report.runs] == [("base", None), ("mh", "stopped")]
    assert report.runs[1].steps < 72


def test_a_rerun_that_is_not_stop_resumes_the_comparison(trap):
    g = gate()
    session = CompareSession({})
    admitted = g.compare(trap, "toy-trap", {"max_new_tokens": 8}, [], ["base", "mh"], 2, "EOS only")
    session.start(admitted)
    admitted.compare.watch = press_stop_during("mh", 2)
    with pytest.raises(RerunException), g.running(admitted) as run:
        list(run.events())
    admitted.compare.watch = None  # the next script run draws its own progress
    with g.running(admitted) as run:
        resumed = list(run.events())
    assert [d.method for d in resumed] == ["mh"] and resumed[0].cut is None
    report = session.finish(run.timed_out)
    assert report.status == "finished" and [d.method for d in report.runs] == ["base", "mh"]
    assert report.notes() == []


# ---- the page ----------------------------------------------------------------------------
def page(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["model_choice"] = "toy-trap"
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page("app_pages/compare.py").run()
    return at


def captions(at: AppTest) -> str:
    return " ".join(re.sub(r"\\(.)", r"\1", c.value) for c in at.caption)


def test_one_run_is_labelled_as_one_run_with_the_load_beside_it():
    at = page()
    assert at.number_input(key="cmp_repeats").value == 1
    at.multiselect(key="cmp_methods").set_value(["base", "smc"])
    at.button(key="cmp_run").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert "latency [s] (one run)" in table and "× plain (one run)" in table
    assert "one run per method" in captions(at) and "Machine load" in captions(at)


def test_repeats_show_the_median_and_its_spread():
    at = page()
    at.multiselect(key="cmp_methods").set_value(["base", "smc"])
    at.number_input(key="cmp_repeats").set_value(2)
    at.button(key="cmp_run").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert {"latency [s] (median of 2)", "spread [s] (min–max)", "× plain (medians)"} <= set(table)
    assert "the first repeat's" in captions(at)


def test_stop_on_the_page_shows_what_finished(trap):
    admitted = gate().compare(trap, "toy-trap", {}, [], ["base", "smc", "greedy"], 0, "EOS only")
    first = next(admitted.compare.runs())  # one method ran before the Stop
    assert first.method == "base"
    at = page(**{keys.COMPARE_ACTIVE: admitted})  # resumed on this first run...
    assert len(at.session_state[keys.COMPARE_LAST].runs) == 3  # ...to its end
    admitted = gate().compare(trap, "toy-trap", {}, [], ["base", "smc", "greedy"], 0, "EOS only")
    next(admitted.compare.runs())
    at.session_state[keys.COMPARE_ACTIVE] = admitted
    at.button(key="cmp_stop").click().run()
    assert not at.exception
    warnings = [re.sub(r"\\(.)", r"\1", w.value) for w in at.warning]
    assert "Stopped after 1 of 3 methods; the finished ones are shown below." in warnings
    assert list(at.dataframe[0].value["method"]) == [comparison.COMPARE_METHODS["base"]]
    assert keys.COMPARE_ACTIVE not in at.session_state


# ---- charts ------------------------------------------------------------------------------
def test_the_loglik_chart_has_horizontal_bars_and_no_title_collision(trap):
    runs = [
        done("base", 1.0),
        done("mh", 2.0, result=result("A", False), cut="budget"),
    ]
    frame = comparison.comparison_frame(runs, trap, "B x")
    fig = loglik_per_token_figure(frame)
    bars = fig.data[0]
    assert bars.orientation == "h" and len(bars.y) == 2
    assert bars.y[1].endswith(" *") and list(bars.marker.pattern.shape) == ["", "/"]
    assert "(" not in bars.y[1]  # "(Karan & Du)" left out: a short label
    assert not fig.layout.yaxis.title.text  # no vertical title to run into the chart title
    assert "partial sequence" in fig.layout.xaxis.title.text
    mh = mh_acceptance_figure({}, "no MH step ran")
    assert mh.layout.annotations[0].text == "no MH step ran"
    assert len(mh.layout.yaxis.title.text) <= 20


# ---- Stop on a real server (a scripted client presses it while MH decodes) ---------------
@pytest.mark.scripted
@pytest.mark.timeout(300)
def test_stop_on_a_real_server_keeps_what_finished_and_frees_the_slot(tmp_path):
    """Streamlit reruns the script when Stop is pressed: the rerun is raised at the next
    progress redraw inside MH, the slot is given back on the way out, and the next script
    run shows the methods that finished; a new Run is admitted at once."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scripted_client import Client, LogReader
    from serving import streamlit_server

    env = {
        **os.environ,
        "POWERSMC_DEMO": "1",
        "POWERSMC_DATA_DIR": str(tmp_path / "data"),
        "POWERSMC_DEMO_MAX_RUN_SECONDS": "120",
        "HF_HUB_OFFLINE": "1",
    }
    base, mh, greedy = (comparison.COMPARE_METHODS[m] for m in ("base", "mh", "greedy"))
    log_path = tmp_path / "server.log"

    async def scenario(url: str, log: LogReader) -> None:
        async with Client(url, local_addr="127.0.0.60") as c:
            await c.open("compare", query="model=smollm2", timeout=180)
            c.set("cmp_methods", [base, mh, greedy])
            c.set("cmp_max_tokens", 32)
            c.set("cmp_mh_steps", 8)  # minutes of MH: Stop comes long before its end
            await c.press("cmp_run")
            await c.wait_for(lambda c: c.find(f"{mh}: step"), timeout=120)
            await c.press("cmp_stop")
            await c.wait_for(lambda c: c.find("Stopped after"), timeout=60)
            assert c.find("Stopped after 1 of 3 methods"), c.texts()[-8:]
            (end,) = log.wait(r"run ended:.*kind=compare", 1, timeout=30)
            assert LogReader.fields(end.split("run ended:", 1)[1])["outcome"] == "stopped"
            log.mark()
            await c.press("cmp_run")  # the slot is free: admitted, not "already in progress"
            log.wait(r"run started:.*kind=compare", 1, timeout=30)
            assert not c.find("already in progress")
            await c.press("cmp_stop")
            log.wait(r"run ended:.*kind=compare", 1, timeout=60)

    with (
        log_path.open("w") as out,
        streamlit_server([sys.executable, "-m", "explorer.serve"], out, env) as (url, _),
    ):
        log = LogReader(log_path)
        log.mark()
        asyncio.run(scenario(url, log))


def test_demo_defaults_take_one_mh_step_per_block():
    # Measured on an idle 2-core CPU: every method finishes within the 60 s cap this way.
    assert comparison.page_defaults(toy=False, demo=True) == {
        "n_particles": 4,
        "max_new_tokens": 32,
        "mh_steps": 1,
    }
    assert comparison.page_defaults(toy=False, demo=False)["mh_steps"] == 4
    assert comparison.page_defaults(toy=True, demo=True)["max_new_tokens"] == 8
