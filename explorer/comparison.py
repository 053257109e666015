"""Method comparison: one prompt through every sampler, timed honestly, and a graded task set.

``Comparison`` runs the chosen methods (plain decoding, low temperature, Power-SMC, MH,
best-of-N, greedy: one ``registry.make_sampler`` each) on the same prompt, ``repeats``
rounds interleaved: round r runs every method once, so a change of the machine's load
hits every method alike. Each run yields a ``MethodDone`` (result, wall seconds, steps).

Budget: with the gate's ``time_left`` each run gets a share of what is left of the
run-time cap when it starts (``run_budget``: what is left less a reserve for the runs
after it, from the times of the runs that finished, and never less than an equal share);
a run whose next step would pass its budget is cut there and keeps its output so far
(every sampler's ``result()`` is its state at any step: MH's chain, SMC's particles),
and the later methods still run. A method cut once is not run again (its later repeats
would be cut too).

``comparison_frame`` is the Compare table: the sampler output of the first repeat, the
median latency of the finished repeats with its min–max spread (``timing_stats``) and
the × plain ratio of medians, the token forwards of each method (the registry's
accounting, rollouts included) and their ratio to Power-SMC's, so methods compare at equal
compute; a completion that did not end (cut, or at max new tokens) is never graded. ``Load`` is the machine's load average at the start and end (shown
beside a one-run table: a single timing measures the load as much as the method).
``CompareSession`` keeps the comparison in flight and the last ``ComparisonReport`` in
session state across Streamlit reruns: Stop keeps what finished (and the partial output
of the method in flight), any other rerun resumes the comparison where it was.

Pages never build a ``Comparison``: ``explorer.gate`` does, inside a queue slot, with
clamped settings.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from explorer import session_keys as keys
from explorer.events import MethodDone, steps_label
from explorer.presets import grade
from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.stopping import StopRule
from powersmc_core.models.base import LanguageModel
from powersmc_core.models.toy import ToyLM
from powersmc_core.samplers.registry import (
    DESCRIPTIONS,
    METHODS,
    default_methods,
    make_sampler,
    unavailable,
)

__all__ = [
    "COMPARE_METHODS",
    "CompareSession",
    "Comparison",
    "ComparisonReport",
    "Load",
    "MethodDone",
    "Timing",
    "compare_runs",
    "comparison_frame",
    "comparison_table",
    "evaluation_api",
    "latency_columns",
    "load_average",
    "method_choices",
    "page_defaults",
    "run_budget",
    "timing_stats",
]


# The library's one method registry, names and descriptions alike: a live view, so a
# method registered later (``registry.register``) is on the Compare list too.
COMPARE_METHODS: Mapping[str, str] = DESCRIPTIONS


def method_choices(model: LanguageModel) -> tuple[list[str], list[str], list[str]]:
    """(offered, selected by default, notes): the registry's methods that run on ``model``
    (a rollout method needs a backend that can fork its state), the default ones among
    them (rollout methods are opt-in: K·M·H forwards per token), and why any is missing."""
    offered, notes = [], []
    for name in COMPARE_METHODS:
        if (why := unavailable(name, model)) is None:
            offered.append(name)
        else:
            notes.append(f"{name}: {why}")
    chosen = [name for name in default_methods() if name in offered]
    return offered, chosen, notes


# How long Stop (or a resumed comparison) waits for the script run in flight to leave
# its step and give its queue slot back (one step, and a redraw).
STOP_WAIT_S = 20.0

# What to change when a method cannot finish within its share of the cap.
FEWER = "choose fewer methods or repeats, fewer max new tokens or fewer MH steps per block"
LOCALLY = "or run the app yourself (`make run`) without the demo caps"


REPEATS_HELP = (
    "How many times each method is timed. Rounds are interleaved (round r runs every "
    "method once), and the table shows the median latency with its min–max spread; the "
    "output shown is the first repeat's (every repeat uses the same seed)."
)


def page_defaults(toy: bool, demo: bool) -> dict[str, int]:
    """The Compare form's defaults: N, max new tokens, MH steps per block.

    In demo mode the embedded model's defaults let all six methods finish within the
    60 s run-time cap on an idle 2-core CPU: one MH step per block (MH dominates: each
    step re-runs the prefix). Measured through the gate (issue 20, load average about 1):
    11.0 s in all on llama.cpp (MH 7.7 s) and 29.5 s on torch (MH 16.7 s); with 2 MH
    steps (24 tokens) torch took 45.6 s, and 4 MH steps took MH alone 31 s on llama.cpp.
    """
    if toy:
        return {"n_particles": 8, "max_new_tokens": 8, "mh_steps": 4}
    return {"n_particles": 4, "max_new_tokens": 32, "mh_steps": 1 if demo else 4}


# ---- timing statistics (pure) ------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    """Median and min–max spread of one method's finished timings, in seconds."""

    median: float
    low: float
    high: float
    n: int  # finished runs timed (NaN statistics when 0)


def timing_stats(seconds: Iterable[float]) -> Timing:
    """Median and min–max of repeated wall times (non-finite values are dropped).

    The median, not the mean: one run slowed by a burst of load moves it by at most one
    rank. The spread is min–max (with 3 repeats, an interquartile range says nothing more).
    """
    values = sorted(float(s) for s in seconds if math.isfinite(s))
    if not values:
        return Timing(math.nan, math.nan, math.nan, 0)
    return Timing(statistics.median(values), values[0], values[-1], len(values))


# A run leaves this many times the expected time of every run after it to those runs.
RESERVE = 1.5


def run_budget(time_left: float, todo: Sequence[str], spent: Mapping[str, float]) -> float:
    """Seconds the next run (``todo[0]``; ``todo`` the methods of the runs left, in order)
    may use of the ``time_left`` before the run-time cap.

    budget = max(time_left / len(todo), time_left - RESERVE · Σ_{runs after} expected)

    where a run's expected time is its method's longest finished run in ``spent``, else the
    median over the methods that finished (one run slowed by a burst of load does not
    starve the others); with nothing finished yet it is an equal share. So a slow method
    after fast ones (MH after plain decoding) may use what they left, the runs after it
    keep their expected time with a margin, and no run gets less than an equal share.
    """
    left = max(0.0, time_left)
    equal = left / max(1, len(todo))
    if not spent:
        return equal
    typical = statistics.median(spent.values())
    reserve = RESERVE * sum(spent.get(method, typical) for method in todo[1:])
    return max(equal, left - reserve)


def load_average() -> float | None:
    """The machine's 1-minute load average (runnable processes), None where unavailable."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # not on every platform
        return None


@dataclass(frozen=True)
class Load:
    """The load average when a comparison started and ended, and the CPUs it shares."""

    start: float | None
    end: float | None
    cpus: int | None

    @property
    def busy(self) -> bool:
        """Other work kept every CPU busy when the comparison started."""
        return self.start is not None and bool(self.cpus) and self.start >= (self.cpus or 0)

    def describe(self) -> str:
        def show(value: float | None) -> str:
            return "unknown" if value is None else f"{value:.2f}"

        cpus = f" on {self.cpus} CPUs" if self.cpus else ""
        return (
            f"Machine load (1-minute average) at the start {show(self.start)}, "
            f"at the end {show(self.end)}{cpus}"
        )


# ---- one comparison in flight ------------------------------------------------------------
Watch = Callable[[str, int, int, float, float | None], None]


class Comparison:
    """The runs of one comparison: the plan (``repeats`` rounds of every method), what
    finished (``done``) and the run an exception interrupted (``interrupted``); kept in
    session state across reruns, it resumes with the runs still to do.

    ``watch(method, repeat, steps, seconds, budget)`` is called after every step of a run
    (the page sets it on each script run: a callback drawn by an earlier one goes stale).
    """

    def __init__(
        self,
        model: LanguageModel,
        prompt: Sequence[int],
        methods: Sequence[str],
        config: SMCConfig,
        mh_steps: int = 4,
        stop_factory: Callable[[], StopRule | None] = lambda: None,
        repeats: int = 1,
        reference: str | None = None,
        model_name: str = "",
        cap_s: float | None = None,
        demo: bool = False,
    ) -> None:
        unknown = [m for m in methods if m not in COMPARE_METHODS]
        if unknown or not methods:
            raise ValueError(
                f"unknown methods {unknown or list(methods)}; choose from {list(COMPARE_METHODS)}"
            )
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
        self.model = model
        self.prompt = list(prompt)
        self.methods = list(dict.fromkeys(methods))  # each method once per round
        self.config = config
        self.mh_steps = mh_steps
        self.stop_factory = stop_factory
        self.repeats = repeats
        self.reference = reference
        self.model_name = model_name
        self.cap_s = cap_s
        self.demo = demo
        self.done: list[MethodDone] = []
        self.interrupted: MethodDone | None = None
        self.load_start: float | None = None
        self.spent: dict[str, float] = {}  # longest finished run per method (cap seconds)
        self.watch: Watch | None = None
        self._stop = threading.Event()  # Stop: the run in flight ends at its next step
        self._idle = threading.Event()  # no script run holds this comparison (``held``)
        self._idle.set()

    # ---- across script runs (Streamlit's fast reruns run the next script run in a new
    # thread while the last one is still inside a step; it ends at its next redraw) ----
    def request_stop(self) -> None:
        """Ask the run in flight (in whichever thread) to end after its current step."""
        self._stop.set()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Mark the script run that runs this comparison; wrap it around the gate's slot,
        so that ``wait_idle`` returns once that run has given its queue slot back (and
        dropped its ``watch``: the next script run sets its own)."""
        self._idle.clear()
        try:
            yield
        finally:
            self.watch = None
            self._idle.set()

    def wait_idle(self, timeout: float = STOP_WAIT_S) -> bool:
        """Wait until no script run holds the comparison (False after ``timeout`` s)."""
        return self._idle.wait(timeout)

    @property
    def total(self) -> int:
        """Runs planned: every method once per round."""
        return len(self.methods) * self.repeats

    def todo(self) -> list[tuple[int, str]]:
        """(repeat, method) runs still to do, round by round; a method cut once is dropped."""
        ran = {(d.repeat, d.method) for d in self.done}
        cut = {d.method for d in self.done if d.cut is not None}
        return [
            (r, m)
            for r in range(self.repeats)
            for m in self.methods
            if (r, m) not in ran and m not in cut
        ]

    def runs(
        self,
        on_step: Callable[[], None] = lambda: None,
        time_left: Callable[[], float] | None = None,
    ) -> Iterator[MethodDone]:
        """Run what is still to do, yielding each ``MethodDone``; ``on_step`` after every
        record a sampler streams (the gate's checkpoint: the cap holds within one step).

        With ``time_left`` (seconds until the run-time cap) each run has a budget
        (``run_budget``): what is left less a reserve for the runs after it, never less
        than an equal share of what is left.
        """
        if self.load_start is None:
            self.load_start = load_average()
        self.interrupted = None  # resumed: the run an earlier script run left is redone
        while todo := self.todo():
            repeat, method = todo[0]
            budget = left = None
            if time_left is not None:
                left = time_left()
                budget = run_budget(left, [m for _, m in todo], self.spent)
            done = self._run(method, repeat, on_step, time_left, budget)
            if done.cut == "stopped":  # Stop: keep its output so far, run nothing more
                self.interrupted = done if repeat == 0 else None
                return
            if left is not None and time_left is not None and done.cut is None:
                self.spent[method] = max(self.spent.get(method, 0.0), left - time_left())
            self.done.append(done)
            yield done

    def _run(
        self,
        method: str,
        repeat: int,
        on_step: Callable[[], None],
        time_left: Callable[[], float] | None,
        budget: float | None,
    ) -> MethodDone:
        """One method, cut when its next step would pass ``budget`` (the last step's time
        predicts the next one's); at least one step always runs."""
        sampler = make_sampler(
            method, self.model, self.config, stop=self.stop_factory(), mh_steps=self.mh_steps
        )
        start = time.perf_counter()
        run = sampler.stream(self.prompt)  # the same records and result as sampler.run
        # The budget in time_left's frame: cut before time_left() would fall below ``end``.
        end = None if time_left is None or budget is None else time_left() - budget
        steps, last, cut, before = 0, 0.0, None, None
        try:
            while True:
                if end is not None and time_left is not None:
                    left = time_left()
                    if before is not None:  # the last step, with its checks and redraw
                        last = before - left
                    before = left
                    if steps and left - last < end:  # the next step would pass the budget
                        cut = "budget"
                        break
                try:
                    next(run)
                except StopIteration:
                    break
                steps += 1
                if self._stop.is_set():
                    cut = "stopped"
                    break
                on_step()
                if self.watch is not None:
                    self.watch(method, repeat, steps, time.perf_counter() - start, budget)
        except BaseException:
            # A cap, a disconnect or Streamlit's rerun (Stop) ended the run inside a
            # step: keep its output so far for the report (first repeat only).
            self.interrupted = self._partial(method, repeat, run, steps, start)
            raise
        return MethodDone(method, run.result(), time.perf_counter() - start, repeat, steps, cut)

    @staticmethod
    def _partial(method: str, repeat: int, run: Any, steps: int, start: float) -> MethodDone | None:
        if repeat > 0 or steps == 0:  # later repeats only time; no step, no output
            return None
        try:
            result = run.result()
        except Exception:  # the sampler itself failed: nothing to keep
            return None
        return MethodDone(method, result, time.perf_counter() - start, repeat, steps, "stopped")

    def report(self, status: str = "finished") -> ComparisonReport:
        """The comparison as it stands: ``status`` finished, stopped or timed out. The run
        an exception interrupted is kept, marked "stopped" or "cap" (timed out)."""
        runs = list(self.done)
        if self.interrupted is not None and status != "finished":
            runs.append(
                replace(self.interrupted, cut="cap" if status == "timed out" else "stopped")
            )
        return ComparisonReport(
            runs=tuple(runs),
            frame=comparison_frame(runs, self.model, self.reference),
            model=self.model_name,
            methods=tuple(self.methods),
            repeats=self.repeats,
            status=status,
            load=Load(self.load_start, load_average(), os.cpu_count()),
            cap_s=self.cap_s,
            demo=self.demo,
        )


def compare_runs(
    model: LanguageModel,
    prompt: Sequence[int],
    methods: Sequence[str],
    config: SMCConfig,
    mh_steps: int = 4,
    stop_factory: Callable[[], StopRule | None] = lambda: None,
    on_step: Callable[[], None] = lambda: None,
    repeats: int = 1,
    time_left: Callable[[], float] | None = None,
) -> Iterator[MethodDone]:
    """Run each method on the same prompt (``repeats`` rounds), yielding its ``MethodDone``.

    ``on_step`` is called after every record a sampler streams (the gate checks the
    run-time cap there, so a cap holds within one step, not one method); ``time_left``
    gives each run a budget of the cap (``run_budget``).
    """
    comparison = Comparison(model, prompt, methods, config, mh_steps, stop_factory, repeats)
    return comparison.runs(on_step, time_left)


# ---- the table ---------------------------------------------------------------------------
def _forwards(method: str, result: Any) -> float:
    """The run's token forwards by the registry's accounting (NaN: a result that reports
    none, e.g. one built by hand or kept from before forwards were counted)."""
    try:
        return float(METHODS[method].cost(result))
    except ValueError:
        return math.nan


def comparison_frame(
    runs: Sequence[MethodDone],
    model: LanguageModel,
    reference: str | None = None,
) -> pd.DataFrame:
    """The Compare table, one row per method: the first repeat's output (graded only if it
    ended: EOS or the stop rule, never cut), the median latency of the finished repeats,
    its min–max, the ratio of medians to plain decoding, speed and likelihood."""
    toy = isinstance(model, ToyLM)
    by_method: dict[str, list[MethodDone]] = {}
    for done in runs:
        by_method.setdefault(done.method, []).append(done)
    timings = {
        m: timing_stats(d.seconds for d in group if d.cut is None) for m, group in by_method.items()
    }
    base = timings.get("base")
    # Compute at equal cost: token forwards (rollouts included) by the registry's accounting,
    # and their ratio to Power-SMC's (the first repeat's run of each; NaN without smc).
    forwards = {
        m: _forwards(m, min(g, key=lambda d: d.repeat).result) for m, g in by_method.items()
    }
    smc_forwards = forwards.get("smc")
    rows = []
    for method, group in by_method.items():
        first = min(group, key=lambda d: d.repeat)  # the output shown: the first repeat's
        result = first.result
        completion = result.chosen_completion
        text = result.chosen_text
        if text is None:
            text = model.decode_batch([completion])[0]
        ended = bool(result.finished[result.chosen]) if result.finished else False
        finished = first.cut is None and ended
        if finished:
            answer, correct = grade(text, reference, toy)
            status = "finished"
        else:  # an unfinished completion is never graded: no answer is read from it
            answer, correct = None, None
            status = first.cut_label or "unfinished"
        timing = timings[method]
        latency = timing.median if timing.n else first.seconds  # cut: the time to its cut
        ratio = timing.median / base.median if timing.n and base and base.n else math.nan
        n_tokens = max(1, len(completion))
        log_p = result.log_p[result.chosen]
        rows.append(
            {
                "key": method,
                "method": COMPARE_METHODS[method],
                "latency [s]": latency,
                "min [s]": timing.low,
                "max [s]": timing.high,
                "timed runs": timing.n,
                "× plain": ratio,
                "token forwards": forwards[method],
                "× Power-SMC forwards": forwards[method] / smc_forwards
                if smc_forwards and math.isfinite(smc_forwards)
                else math.nan,
                "tokens/s": len(completion) / latency if latency > 0 else math.nan,
                "tokens": len(completion),
                "log p": log_p,
                "log p / token": log_p / n_tokens,
                "completion": text,
                "answer": answer,
                "correct": correct,
                "finished": finished,
                "status": status,
                "steps": first.steps,
            }
        )
    return pd.DataFrame(rows)


def latency_columns(repeats: int) -> tuple[str, str]:
    """(latency, ratio) headers as shown: one run, or medians of ``repeats`` runs."""
    if repeats <= 1:
        return "latency [s] (one run)", "× plain (one run)"
    return f"latency [s] (median of {repeats})", "× plain (medians)"


SPREAD = "spread [s] (min–max)"
FORWARD_COLUMNS = ("token forwards", "× Power-SMC forwards")


def comparison_table(frame: pd.DataFrame, repeats: int = 1) -> pd.DataFrame:
    """The Compare table as shown: method, answer and verdict first (✓ right, ✗ wrong, —
    not graded; a completion that did not end shows why in place of its answer), the
    timings (one run, or median, spread and runs timed), likelihoods, the completion last."""
    verdict = frame["correct"].map(lambda c: "—" if c is None or c != c else ("✓" if c else "✗"))
    answer = frame["answer"]
    if "finished" in frame:
        answer = answer.where(frame["finished"].astype(bool), frame["status"])
    latency, ratio = latency_columns(repeats)
    table = pd.DataFrame({"method": frame["method"], "answer": answer, "correct": verdict})
    table[latency] = frame["latency [s]"]
    if repeats > 1 and "min [s]" in frame:
        table[SPREAD] = [
            "—" if n == 0 else f"{lo:.3f}–{hi:.3f}"
            for lo, hi, n in zip(
                frame["min [s]"], frame["max [s]"], frame["timed runs"], strict=True
            )
        ]
        if (frame["timed runs"] != repeats).any():  # a method cut: fewer runs timed
            table["timed runs"] = frame["timed runs"]
    table[ratio] = frame["× plain"]
    for column in FORWARD_COLUMNS:
        if column in frame:  # a report kept from before forwards were counted has none
            table[column] = frame[column]
    for column in ("tokens/s", "tokens", "log p", "log p / token", "completion"):
        table[column] = frame[column]
    return table


# ---- the report shown --------------------------------------------------------------------
@dataclass(frozen=True)
class ComparisonReport:
    """A comparison that ended (finished, stopped or timed out), as the page shows it."""

    runs: tuple[MethodDone, ...]
    frame: pd.DataFrame
    model: str
    methods: tuple[str, ...]
    repeats: int
    status: str  # finished | stopped | timed out
    load: Load
    cap_s: float | None = None
    demo: bool = False

    @property
    def finished_methods(self) -> int:
        """Methods whose first run ended on its own (not cut, not stopped)."""
        return sum(d.repeat == 0 and d.cut is None for d in self.runs)

    def notes(self) -> list[str]:
        """Warnings for the page: a stop, the cap, the methods cut at their budget, and
        what to change so that every method finishes."""
        n, k = len(self.methods), self.finished_methods
        found = []
        if self.status == "stopped":
            found.append(f"Stopped after {k} of {n} methods; the finished ones are shown below.")
        elif self.status == "timed out":
            cap = f" ({self.cap_s:g} s)" if self.cap_s else ""
            found.append(f"Stopped at the run-time cap{cap} after {k} of {n} methods.")
        cut = [d for d in self.runs if d.repeat == 0 and d.cut == "budget"]
        if cut:
            names = ", ".join(f"{COMPARE_METHODS[d.method]} ({steps_label(d.steps)})" for d in cut)
            cap = f"{self.cap_s:g} s " if self.cap_s else ""
            found.append(
                f"Cut at its budget of the {cap}run-time cap, its output so far shown and not "
                f"graded: {names}. The other methods still ran."
            )
        if cut or self.status == "timed out":
            found.append(
                f"To let every method finish, {FEWER}{', ' + LOCALLY if self.demo else ''}."
            )
            if self.load.busy:
                found.append(
                    f"The machine was busy when it started (load average {self.load.start:.2f} "
                    f"on {self.load.cpus} CPUs): every step took longer than on an idle "
                    "machine; a quieter moment may let the same settings finish."
                )
        return found

    def timing_note(self) -> str:
        """How the latency column was measured, and the machine's load beside it."""
        if self.repeats <= 1:
            how = (
                "Latency: one run per method, so it measures the machine's load as much as "
                "the method; set repeats above 1 for a median and its spread."
            )
        else:
            how = (
                f"Latency: the median of {self.repeats} runs per method, interleaved (round r "
                "runs every method once, so a change of load hits every method alike); "
                "spread: min–max; × plain: the ratio of medians. Completion, answer and "
                "log p are the first repeat's: every repeat uses the same seed."
            )
        return f"{how} {self.load.describe()}."

    def mh_traces(self) -> tuple[dict[str, list[float]], str]:
        """MH's running acceptance per MH step (first repeat), and what an empty chart says."""
        traces = {}
        for done in self.runs:
            if done.method != "mh" or done.repeat != 0 or not done.result.extras:
                continue
            extras = done.result.extras
            rate = extras.get("acceptance_rate", math.nan)
            how = "final" if done.cut is None else f"{done.cut_label}, so far"
            if extras.get("acceptance_trace"):
                traces[f"MH ({how} acceptance {rate:.2f})"] = list(extras["acceptance_trace"])
        ran = any(d.method == "mh" for d in self.runs)
        note = "no MH step ran (cut or stopped before one, or 0 MH steps)" if ran else "no MH run"
        return traces, note


# ---- across Streamlit reruns -------------------------------------------------------------
class CompareSession:
    """One visitor's comparison in flight and last report, kept in session ``state``.

    The comparison in flight is the gate's ``Admission`` (its ``compare`` holds the
    ``Comparison``); the page resumes it on every rerun until it ends::

        session = CompareSession(st.session_state)
        session.stop()             # Stop: what finished is kept as the last report
        session.start(admitted)    # Run: a comparison in flight is replaced
        report = session.finish(timed_out)   # it ended (or hit the run-time cap)
    """

    def __init__(self, state: MutableMapping[str, Any]) -> None:
        self.state = state

    @property
    def active(self) -> Any | None:
        """The admitted comparison in flight (an ``explorer.gate.Admission``)."""
        return self.state.get(keys.COMPARE_ACTIVE)

    @property
    def last(self) -> ComparisonReport | None:
        return self.state.get(keys.COMPARE_LAST)

    def start(self, admitted: Any) -> None:
        self.state[keys.COMPARE_ACTIVE] = admitted

    def stop(self) -> ComparisonReport | None:
        """End the comparison in flight: what ran is the last report ("Stopped after k of n
        methods"); None when nothing was in flight or nothing had run yet."""
        return self._end("stopped")

    def finish(self, timed_out: bool = False) -> ComparisonReport | None:
        """The comparison in flight ended: on its own, at the run-time cap, or short of its
        plan for another reason (the visitor's browser went away: "stopped")."""
        active = self.active
        if timed_out:
            return self._end("timed out")
        short = active is not None and bool(active.compare.todo())
        return self._end("stopped" if short else "finished")

    def _end(self, status: str) -> ComparisonReport | None:
        admitted = self.state.pop(keys.COMPARE_ACTIVE, None)
        if admitted is None:
            return None
        comparison: Comparison = admitted.compare
        if status == "stopped":
            # The script run Stop interrupted may still be inside a step (a fast rerun runs
            # this one in a new thread): it ends there; the report waits for what it kept.
            comparison.request_stop()
            comparison.wait_idle()
        if not comparison.done and (comparison.interrupted is None or status == "finished"):
            return None  # nothing ran: nothing to show
        report = comparison.report(status)
        self.state[keys.COMPARE_LAST] = report
        return report


def evaluation_api() -> Any | None:
    """HOOK for the lead: the task-set comparison (``evaluation.api.run_task_comparison``).

    The Compare page shows a task-set section only when this returns the module, so wiring
    it in is one call in ``app_pages/compare.py`` (see the ``HOOK`` comment there).
    """
    try:
        from powersmc_core.evaluation import api
    except ImportError:
        return None
    return api if hasattr(api, "run_task_comparison") else None
