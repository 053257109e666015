"""THE policy gate: the one way a page starts a sampler run or reads an upload.

A page asks the gate for an *admission*, then runs it inside the gate's context
manager; nothing else in ``app_pages/`` may build a sampler (a test reads the pages'
syntax trees and fails if one imports a sampler class, a loader or the limiter)::

    gate = open_gate(st.session_state)
    admission = gate.compare(model, name, requested, prompt, methods, mh_steps, stop_rule)
    for note in admission.notes:                 # what the caps changed, one line each
        st.warning(note)
    with gate.running(admission, on_wait) as run:   # queue slot; on_wait(position, s)
        for done in run.events():                # ends at the run-time cap
            st.write(done.method, done.seconds)  # typed events (explorer.events)
    run.timed_out                                # True if the cap cut the run short

Admission (``live``, ``compare``, ``task_set``, ``theory``, ``arena``) is pure: it validates the
request (``InputError`` for values no cap can fix: alpha <= 0, N = 0, an unknown
method), clamps every number to the mode's caps (``DemoSettings``) with one note per
change, sanitises and encodes the prompt under the token cap, and parses the stop
rule. ``running`` takes a server-wide queue slot for the visitor (``LimitError`` when
the visitor already runs something or the queue is full), stops the events at the
run-time cap (Live SMC and Compare within one step, a task set within one graded
run, the Theory lab between two checks), and journals the run: a live run's records
go to the run store (crash-safe), every run gets a start and an end line in the
``explorer.gate`` log. ``upload`` reads a trace under the mode's upload cap (5 MB in
demo mode).

Every job calls ``GatedRun.checkpoint`` after each model step (a token step, or one MH
proposal inside a task set): past the run-time cap the run ends there ("timed out"),
and when the visitor's browser has gone it ends there too ("disconnected"), so a
closed tab never keeps decoding and a slot is freed only when its job has stopped.

The visitor (``Gate.visitor``) is one browser across its tabs when its signed cookie
tells it, else the session (``identity.visitor_key``); its address is the client
address (``identity.client_address``); both are computed by ``app.py`` through
``who_is_asking``. One run and one queue place per visitor, and the per-address caps
of ``limits.RunLimiter`` whatever the cookies. The journal lines carry hashes of both,
the caps, the duration and the outcome (finished, timed out, disconnected, stopped,
error); a refused request gets a "run refused" line. Uploads are read under the mode's
``trace_limits`` (bounded replay work); stop strings are bounded in count and length
(``inputs.make_stop``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from explorer import comparison, session_keys, theory_lab
from explorer.events import CheckDone, MethodDone, TaskRows
from explorer.history import MAX_HISTORY, RunEntry, entry_from_stored, entry_from_trace
from explorer.identity import client_address, short_hash, visitor_key
from explorer.inputs import (
    InputError,
    check_config,
    clamp_config,
    clamp_rollouts,
    make_stop,
    prompt_ids,
)
from explorer.limits import (
    LimitError,
    RunLimiter,
    RunSlot,
    current_session_id,
    global_limiter,
    session_connected,
    session_peer,
)
from explorer.live import LIVE_METHODS, LiveRun, Update
from explorer.settings import DemoSettings, demo_settings
from explorer.store import RunStore, run_store, tracked
from explorer.uploads import read_upload
from powersmc_core.engine.config import SMCConfig, range_message
from powersmc_core.io.trace import TraceError
from powersmc_core.models.base import LanguageModel
from powersmc_core.models.toy import ToyLM
from powersmc_core.samplers.registry import unavailable

__all__ = [
    "Admission",
    "CheckDone",
    "Gate",
    "GatedRun",
    "InputError",
    "LimitError",
    "MethodDone",
    "TaskRows",
    "TraceError",
    "open_gate",
    "who_is_asking",
]

log = logging.getLogger(__name__)

Job = Callable[["GatedRun"], Iterator[Any]]


@dataclass
class Admission:
    """A request the gate accepted: clamped settings, encoded prompt, notes on what changed.

    It holds no running sampler; ``Gate.running`` starts it. ``live`` is set for a Live
    SMC run and ``compare`` for a comparison, which a page keeps in session state across
    reruns and resumes.
    """

    kind: str  # "live" | "compare" | "task set" | "theory"
    model_name: str
    config: SMCConfig
    notes: tuple[str, ...]
    job: Job = field(repr=False)
    live: LiveRun | None = None
    compare: comparison.Comparison | None = None
    created: float = field(default_factory=time.time)

    def finish(self) -> RunEntry:
        """A live run's history entry ('stopped' with its records so far unless complete)."""
        if self.live is None:
            raise TypeError(f"a {self.kind} run has no live history entry")
        return self.live.finish()


class GatedRun:
    """A run inside its queue slot: ``events()`` until the end, the cap or a disconnect."""

    def __init__(
        self,
        admission: Admission,
        slot: RunSlot,
        journal: Any = None,
        connected: Callable[[], bool] = lambda: True,
    ) -> None:
        self.admission = admission
        self.slot = slot
        self.journal = journal
        self.connected = connected
        self.timed_out = False
        self.disconnected = False

    @property
    def waited_s(self) -> float:
        return self.slot.waited_s

    @property
    def save_error(self) -> str | None:
        """Why the run store kept nothing of this run (``StoreFull``), once it has ended."""
        return getattr(self.journal, "save_error", None)

    @property
    def outcome(self) -> str:
        if self.disconnected:
            return "disconnected"
        return "timed out" if self.timed_out else "finished"

    def checkpoint(self) -> None:
        """End the run here when past the cap or when the visitor has gone (after a step)."""
        if self.slot.expired:
            raise _RunTimeCap
        if not self.connected():
            raise _Disconnected

    def events(self) -> Iterator[Any]:
        try:
            for event in self.slot.bounded(self.admission.job(self)):
                if self.journal is not None and isinstance(event, Update):
                    self.journal.sync(event.records)
                yield event
        except _RunTimeCap:
            self.slot.timed_out = True
        except _Disconnected:
            self.disconnected = True
        self.timed_out = self.slot.timed_out
        if self.journal is not None and self.outcome != "finished":
            self.journal.final_status = "timed out" if self.timed_out else "stopped"


class _RunTimeCap(Exception):
    """The run-time cap passed inside a job that cannot stop between events."""


class _Disconnected(Exception):
    """The visitor's browser went away while its job was running."""


class Gate:
    """Caps, queue and journal of one visitor's requests (see the module docstring)."""

    def __init__(
        self,
        settings: DemoSettings,
        limiter: RunLimiter | None = None,
        store: RunStore | None = None,
        visitor: str | None = None,
        owner: str | None = None,
        address: str | None = None,
    ) -> None:
        self.settings = settings
        self.limiter = limiter if limiter is not None else global_limiter(settings)
        self.store = store
        self.session = current_session_id()
        self.visitor = visitor or self.session
        self.owner = owner
        self.address = address or "unknown"

    # ---- admission (pure: validates, clamps, encodes; starts nothing) ---------------------
    def clamp(self, requested: Mapping[str, Any]) -> tuple[SMCConfig, list[str]]:
        """``requested`` SMCConfig fields: invalid ones raise, over-cap ones are clamped."""
        check_config(requested, self.settings)  # alpha <= 0, N = 0, ...: no cap can fix them
        return clamp_config(requested, self.settings)

    def cap(self, label: str, value: Any, low: int, high: int, notes: list[str]) -> int:
        """An integer count clamped to [low, high]; below ``low`` is an error."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{label} must be an integer; got {value!r}")
        if value < low:
            raise InputError(range_message(label, value, low, high))
        if value > high:
            notes.append(range_message(label, value, low, high, using=high))
            return high
        return value

    def live(
        self,
        model: LanguageModel,
        model_name: str,
        requested: Mapping[str, Any],
        prompt: str | Sequence[int],
        prompt_label: str,
        stop_rule: str,
        stop_strings: str = "",
        reference: str | None = None,
        method: str = "smc",
    ) -> Admission:
        """A Live SMC run (``method``: Power-SMC or look-ahead SMC, whose rollout forwards
        N·K·M·H per boundary are capped); its ``LiveRun`` is built here and kept by the page."""
        if method not in LIVE_METHODS:
            raise InputError(f"Live SMC runs one of {list(LIVE_METHODS)}; got {method!r}")
        if (why := unavailable(method, model)) is not None:
            raise InputError(why)
        config, notes = self.clamp(requested)
        config, more = clamp_rollouts(config, [method], model, self.settings)
        notes += more
        ids = prompt_ids(model, prompt, self.settings)
        stop = make_stop(stop_rule, stop_strings)
        run = LiveRun(
            model,
            config,
            ids,
            model_name=model_name,
            prompt_label=prompt_label,
            stop=stop,
            reference=reference,
            stop_rule=stop_rule,
            stop_strings=stop_strings,
            method=method,
        )
        # check_deadline after every step: the cap holds within one step, not one redraw.
        return Admission(
            "live",
            model_name,
            config,
            tuple(notes),
            lambda gated: run.updates(on_step=gated.checkpoint),
            live=run,
        )

    def compare(
        self,
        model: LanguageModel,
        model_name: str,
        requested: Mapping[str, Any],
        prompt: str | Sequence[int],
        methods: Sequence[str],
        mh_steps: Any,
        stop_rule: str,
        repeats: Any = 1,
        reference: str | None = None,
    ) -> Admission:
        """Every method on one prompt, ``repeats`` rounds; one ``MethodDone`` per run.

        Its ``Comparison`` (``Admission.compare``) is kept by the page across reruns; each
        run gets a share of what is left of the run-time cap (``comparison.run_budget``)."""
        config, notes = self.clamp(requested)
        steps = self.cap("MH steps", mh_steps, 0, self.settings.max_mh_steps, notes)
        rounds = self.cap("repeats", repeats, 1, self.settings.max_compare_repeats, notes)
        ids = prompt_ids(model, prompt, self.settings)
        make_stop(stop_rule)  # validate once; each method gets a fresh rule
        unknown = [m for m in methods if m not in comparison.COMPARE_METHODS]
        if unknown or not methods:
            raise InputError(
                f"unknown methods {unknown or list(methods)}; "
                f"choose from {list(comparison.COMPARE_METHODS)}"
            )
        offered, _, why = comparison.method_choices(model)
        if refused := [m for m in methods if m not in offered]:
            raise InputError(f"not on this model: {', '.join(refused)} ({'; '.join(why)})")
        config, more = clamp_rollouts(config, methods, model, self.settings)
        notes += more
        compared = comparison.Comparison(
            model,
            ids,
            methods,
            config,
            steps,
            lambda: make_stop(stop_rule),
            repeats=rounds,
            reference=reference,
            model_name=model_name,
            cap_s=self.settings.max_run_seconds,
            demo=self.settings.enabled,
        )

        def job(run: GatedRun) -> Iterator[Any]:
            # checkpoint after every step: the cap holds within one step of a method.
            return compared.runs(on_step=run.checkpoint, time_left=run.slot.time_left)

        return Admission("compare", model_name, config, tuple(notes), job, compare=compared)

    def task_set(
        self,
        model: LanguageModel,
        model_name: str,
        requested: Mapping[str, Any],
        methods: Sequence[str],
        mh_steps: Any,
        n_problems: Any,
        task: str,
        difficulty: int,
        toy_prompt: Sequence[int] | None = None,
        toy_answer: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Admission:
        """A graded task set through the evaluation harness; one event: ``TaskRows``."""
        api = comparison.evaluation_api()
        if api is None:
            raise InputError("the task-set comparison is not available in this installation")
        config, notes = self.clamp(requested)
        steps = self.cap("MH steps", mh_steps, 0, self.settings.max_mh_steps, notes)
        count = self.cap("problems", n_problems, 1, self.settings.max_task_problems, notes)
        if not methods:
            raise InputError("choose at least one method")
        config, more = clamp_rollouts(config, methods, model, self.settings)
        notes += more
        settings = api.EvalSettings(
            alpha=config.alpha,
            n_particles=config.n_particles,
            max_new_tokens=config.max_new_tokens,
            mh_steps=steps,
            seed=config.seed,
            block_size=config.block_size,
            rollout_k=config.rollout_k,
            rollout_m=config.rollout_m,
            rollout_h=config.rollout_h,
            lookahead_epsilon=config.lookahead_epsilon,
        )
        if isinstance(model, ToyLM):
            if toy_prompt is not None and toy_answer is None:
                # Its mode is the empty completion: nothing to grade against (issue 20).
                raise InputError(
                    "this toy prompt has no known answer (the mode of p is the empty "
                    "completion): choose another prompt for the task set"
                )
            defaults = {"answer": toy_answer} if toy_answer is not None else {}
            problems = api.toy_problems(count, prompt_ids=tuple(toy_prompt or ()), **defaults)
        else:
            problems = api.load_task(task, n=count, seed=config.seed, difficulty=difficulty)

        def job(run: GatedRun) -> Iterator[Any]:
            def advance(done: int, total: int, _row: object) -> None:
                if progress is not None:
                    progress(done, total)

            # checkpoint after every token step and MH proposal: the cap holds within one.
            rows = api.run_task_comparison(
                model, problems, methods, settings, progress=advance, on_step=run.checkpoint
            )
            yield TaskRows(rows)

        return Admission("task set", model_name, config, tuple(notes), job)

    def theory(
        self,
        model: ToyLM,
        model_name: str,
        alpha: Any,
        n_particles: Any,
        runs: Any,
        n_max: Any,
        seed: Any,
    ) -> tuple[Admission, theory_lab.TheorySettings]:
        """The Theory lab's checks; one ``CheckDone`` event each. Also the settings used.

        ``model_name`` must pass ``theory_lab.check_theory_model`` (an enumerable toy)."""
        model_name = theory_lab.check_theory_model(model_name, self.settings)
        requested = {"alpha": alpha, "n_particles": n_particles, "seed": seed}
        config, notes = self.clamp(requested)
        count = self.cap("runs per point", runs, 2, self.settings.max_theory_runs, notes)
        largest = self.cap("max N", n_max, 2, self.settings.max_particles, notes)
        try:
            settings = theory_lab.TheorySettings(
                alpha=config.alpha,
                n_particles=config.n_particles,
                runs=count,
                n_max=largest,
                seed=config.seed,
            )
        except ValueError as err:
            raise InputError(str(err)) from None
        admission = Admission(
            "theory",
            model_name,
            config,
            tuple(notes),
            lambda _: (CheckDone(*check) for check in theory_lab.run_checks(model, settings)),
        )
        return admission, settings

    def arena(
        self,
        suites: Sequence[str],
        methods: Sequence[str],
        runs: Any,
        n_max: Any,
        alpha: Any,
        seed: Any,
    ) -> tuple[Admission, Any]:
        """The arena (``theory_lab.arena_job``): runs per point under the Theory lab's cap,
        the largest N under the particle cap, MH steps under the MH cap; a ``CheckDone``
        per cell, the run-time cap checked after every sampler run. Also the settings."""
        config, notes = self.clamp({"alpha": alpha, "n_particles": n_max, "seed": seed})
        count = self.cap("runs per point", runs, 2, self.settings.max_theory_runs, notes)
        settings = theory_lab.arena_settings(
            suites,
            methods,
            count,
            config.n_particles,
            config.alpha,
            config.seed,
            self.settings.max_mh_steps,
        )
        admission = Admission(
            "arena",
            "toy suites",
            config,
            tuple(notes),
            lambda gated: theory_lab.arena_job(settings, gated.checkpoint),
        )
        return admission, settings

    # ---- running: queue slot, run-time cap, journal ----------------------------------------
    @staticmethod
    def queue_message(position: int, waited: float) -> str:
        """What a waiting visitor reads (``on_wait(position, waited)`` of ``running``)."""
        return f"Waiting for a free slot: you are #{position} in the queue ({waited:.0f} s)."

    @contextlib.contextmanager
    def running(
        self, admission: Admission, on_wait: Callable[[int, float], None] | None = None
    ) -> Iterator[GatedRun]:
        """Hold a queue slot while the block iterates ``run.events()``; journal the run.

        A live run resumed after a rerun keeps its age, so reruns cannot extend the cap.
        """
        age = time.time() - admission.created
        who = (
            f"visitor={short_hash(self.visitor)} address={short_hash(self.address)} "
            f"kind={admission.kind}"
        )
        slot_cm = self.limiter.slot(self.visitor, on_wait, run_age_s=age, address=self.address)
        try:
            slot = slot_cm.__enter__()
        except LimitError as err:
            log.info("run refused: %s reason=%s", who, type(err).__name__)
            raise
        try:
            number = slot.ticket.number if slot.ticket is not None else -1
            config = admission.config
            log.info(
                "run started: id=%d %s model=%s N=%d tokens=%d cap=%gs waited=%.1fs",
                number,
                who,
                admission.model_name,
                config.n_particles,
                config.max_new_tokens,
                self.settings.max_run_seconds,
                slot.waited_s,
            )
            start = time.perf_counter()
            outcome = "stopped"  # unless the block ends normally: Stop, a rerun
            connected = self._connected
            try:
                if admission.live is not None:
                    with tracked(
                        admission.live, self.owner, self._store(), self.address
                    ) as journal:
                        run = GatedRun(admission, slot, journal, connected)
                        yield run
                else:
                    run = GatedRun(admission, slot, connected=connected)
                    yield run
                outcome = run.outcome
            except Exception:
                outcome = "error"
                raise
            finally:
                if outcome == "stopped" and not connected():
                    outcome = "disconnected"
                log.info(
                    "run ended: id=%d %s outcome=%s duration=%.1fs",
                    number,
                    who,
                    outcome,
                    time.perf_counter() - start,
                )
        finally:
            slot_cm.__exit__(None, None, None)

    def _connected(self) -> bool:
        return session_connected(self.session)

    def _store(self) -> RunStore | None:
        return self.store if self.store is not None else run_store(self.settings)

    # ---- uploads ---------------------------------------------------------------------------
    @property
    def max_upload_mb(self) -> int:
        """The uploader widget's cap in whole MB (the gate checks the exact bytes)."""
        return max(1, math.ceil(self.settings.max_upload_mb))

    def upload(self, data: Any, name: str = "upload") -> RunEntry:
        """A trace upload as a history entry, under the mode's size cap; ``TraceError``."""
        return entry_from_trace(read_upload(data, self.settings, name), name)

    def stored_runs(self, skip: set[str]) -> Iterator[tuple[RunEntry | None, str | None]]:
        """The visitor's runs saved by earlier visits, oldest first, as (entry, None), or
        (None, why) for one that could not be read back; ``skip`` holds known run ids."""
        store = self._store()
        if store is None or not self.owner:
            return
        for info in reversed(store.list(self.owner, limit=MAX_HISTORY)):
            if info.run_id in skip:
                continue
            try:
                stored = store.load(info.run_id, self.owner)
            except (KeyError, TraceError) as err:
                yield None, f"Saved run {info.run_id} could not be restored: {err}"
                continue
            yield entry_from_stored(stored.trace(), info.run_id, info.status, info.created), None


def who_is_asking(
    cookies: Mapping[str, str] | None, headers: Mapping[str, str] | None, settings: DemoSettings
) -> tuple[str, str]:
    """(visitor key, client address) of this script run; ``app.py`` keeps both in state."""
    session = current_session_id()
    address = client_address(session_peer(session), headers, settings.trusted_proxies)
    return visitor_key(cookies, session), address


def open_gate(state: MutableMapping[str, Any] | None = None) -> Gate:
    """The gate for the current visitor: settings from the environment, the server's
    limiter, the visitor and address (``who_is_asking``) and the run-history owner token
    from session ``state``."""
    state = {} if state is None else state
    return Gate(
        demo_settings(),
        owner=state.get(session_keys.OWNER),
        visitor=state.get(session_keys.VISITOR),
        address=state.get(session_keys.ADDRESS),
    )
