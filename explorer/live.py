"""The live-run controller: one Power-SMC run a page iterates across Streamlit reruns.

``LiveRun`` drives the run as a generator of redraw events on an adaptive clock
(``Throttle``): cheap O(N) charts at most every ``light_s``, O(T·N) charts at most
every ``full_s`` stretched to ``cost_factor`` × their last cost, and full redraws never
more than ``budget`` (15%) of the wall time. The run object owns its records, so a
Streamlit rerun (the Stop button) never loses a decoded step.

On a ToyLM, ``LiveRun.exact_target()`` is the run's exact target by enumeration (for
the Live page's exact-target panel), built once per (model, prompt, max_new_tokens)
in a small process-wide cache, and only when cheap (``MAX_EXACT_PREFIXES``).

Pages never build a ``LiveRun``: ``explorer.gate`` does, after clamping the settings
and encoding the prompt, and iterates it inside a queue slot.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from explorer.history import RunEntry, preset_id
from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.records import SMCResult, StepRecord
from powersmc_core.engine.stopping import StopRule
from powersmc_core.models.backends import backend_of
from powersmc_core.models.base import LanguageModel
from powersmc_core.models.toy import ToyLM
from powersmc_core.samplers.registry import make_sampler
from powersmc_core.theory.live_target import MAX_EXACT_PREFIXES, ExactTarget, exact_target

__all__ = [
    "LIVE_METHODS",
    "MAX_EXACT_PREFIXES",
    "LiveRun",
    "Throttle",
    "Update",
    "cached_exact_target",
]

# The particle samplers Live SMC can run: Power-SMC and look-ahead SMC (the same records).
LIVE_METHODS = ("smc", "lookahead")

# Exact targets kept server-wide: a ToyLM's enumeration is shared by every session's runs
# on the same prompt and length (the exponent and schedule only reweight its states).
EXACT_CACHE_ITEMS = 8
_exact_cache: OrderedDict[tuple[Any, ...], tuple[ExactTarget | None, Any]] = OrderedDict()
_exact_lock = threading.Lock()


def cached_exact_target(
    model: LanguageModel, prompt: Sequence[int], max_new_tokens: int
) -> ExactTarget | None:
    """``exact_target(model, prompt, max_new_tokens)`` (no stop rule), built once per key.

    The key names the model by ``id`` and holds the model with the entry, so an id is
    never reused while its entry lives; None (too large, not a toy) is cached too.
    """
    key = (id(model), getattr(model, "name", None), tuple(prompt), max_new_tokens)
    with _exact_lock:
        if key in _exact_cache:
            _exact_cache.move_to_end(key)
            return _exact_cache[key][0]
    target = exact_target(model, prompt, max_new_tokens)
    with _exact_lock:
        _exact_cache[key] = (target, model)
        while len(_exact_cache) > EXACT_CACHE_ITEMS:
            _exact_cache.popitem(last=False)
    return target


@dataclass
class Throttle:
    """When to redraw: 'full' (every chart), 'light' (O(N) charts and progress) or None.

    Each kind waits at least its base interval, stretched to ``cost_factor`` × its last
    cost; full redraws (O(T·N), they grow with the run) also wait while they have taken
    more than ``budget`` of the wall time so far. Light redraws thus take at most
    1/(1 + cost_factor) of the time (a few % when they are fast) and full ones ``budget``.
    """

    light_s: float = 0.25
    full_s: float = 1.0
    cost_factor: float = 4.0
    budget: float = 0.15
    _start: float | None = None
    _spent: float = 0.0  # seconds of full redraws so far
    _last: dict[str, float] = field(default_factory=lambda: {"light": -math.inf, "full": -math.inf})
    _cost: dict[str, float] = field(default_factory=lambda: {"light": 0.0, "full": 0.0})

    def interval(self, kind: str) -> float:
        base = self.full_s if kind == "full" else self.light_s
        return max(base, self.cost_factor * self._cost[kind])

    def poll(self, now: float) -> str | None:
        if self._start is None:
            self._start = now
        within_budget = self._spent <= self.budget * (now - self._start)
        if within_budget and now - self._last["full"] >= self.interval("full"):
            return "full"
        # Light redraws (progress, ESS, weights, texts) cost O(N): only their own clock applies.
        if now - self._last["light"] >= self.interval("light"):
            return "light"
        return None

    def drawn(self, kind: str, started: float, finished: float) -> None:
        if kind == "full":
            self._spent += finished - started
        self._last[kind] = finished
        self._cost[kind] = finished - started
        if kind == "full":  # a full redraw includes the light charts
            self._last["light"] = finished


@dataclass(frozen=True)
class Update:
    """A redraw event: which charts ('light' or 'full') at which record."""

    kind: str
    records: Sequence[StepRecord]
    final: bool = False

    @property
    def record(self) -> StepRecord:
        return self.records[-1]


class LiveRun:
    """One Power-SMC run that a page iterates across reruns without losing a step.

    ``updates()`` advances the sampler and yields an ``Update`` whenever the throttle
    says a redraw is due; the time the consumer spends between two yields is the
    redraw cost the throttle adapts to. Records are appended before anything else can
    run, so an interrupted consumer (Streamlit raises at its next ``st`` call when Stop
    is pressed) leaves a consistent run: ``finish(stopped=True)`` keeps it.
    """

    def __init__(
        self,
        model: LanguageModel,
        config: SMCConfig,
        prompt: Sequence[int],
        *,
        model_name: str,
        prompt_label: str,
        stop: StopRule | None = None,
        reference: str | None = None,
        stop_rule: str | None = None,
        stop_strings: str | None = None,
        throttle: Throttle | None = None,
        clock: Callable[[], float] = time.perf_counter,
        method: str = "smc",
    ) -> None:
        if method not in LIVE_METHODS:
            raise ValueError(f"Live SMC runs {list(LIVE_METHODS)}; got {method!r}")
        self.method = method
        self.model = model
        self.config = config
        self.prompt = list(prompt)
        self.model_name = model_name
        self.prompt_label = prompt_label
        self.reference = reference
        self.toy = isinstance(model, ToyLM)
        self.stop = stop
        # How the run is made, for its history entry and trace header (links replay it).
        self.context = {
            "stop_rule": stop_rule,
            "stop_strings": stop_strings if stop_rule == "stop strings" else None,
            "backend": backend_of(model)[0],
            "preset": preset_id(prompt_label, reference),
        }
        self._exact: tuple[ExactTarget | None] | None = None
        self.throttle = throttle or Throttle()
        self.clock = clock
        self.records: list[StepRecord] = []
        self.compute_s = 0.0  # time inside the sampler only (the run's wall time includes redraws)
        self.run_id = uuid.uuid4().hex[:8]
        self.created = time.time()
        self._sampler = make_sampler(method, model, config, stop=stop)
        self._run: Any = None  # the stream starts (prefill) at the first step, inside a slot

    @property
    def done(self) -> bool:
        return bool(self.records) and self.records[-1].done

    def exact_target(self) -> ExactTarget | None:
        """The run's exact target on a ToyLM (None: not a toy, or too large to enumerate).

        Under a stop rule the target is the power of the stopped law, enumerated with a
        copy of this run's rule (kept with the run: the rule is not a cache key).
        """
        if self._exact is None:
            if not self.toy:
                target = None
            elif self.stop is None:
                target = cached_exact_target(self.model, self.prompt, self.config.max_new_tokens)
            else:
                target = exact_target(
                    self.model, self.prompt, self.config.max_new_tokens, stop=self.stop
                )
            self._exact = (target,)
        return self._exact[0]

    def boundaries(self) -> list[Any] | None:
        """Look-ahead SMC's block boundaries so far (``engine.lookahead.Boundary``: the
        candidates, their log ζ̂, the offspring), as its result's extras would hold them;
        None for Power-SMC. Read per redraw while the run streams (host copies, small)."""
        lookahead = getattr(getattr(self._run, "parts", None), "lookahead", None)
        if self.method != "lookahead" or lookahead is None:
            return None
        return lookahead.boundaries(before=self._run.step)

    def step(self) -> StepRecord | None:
        """Decode one token for all particles; None once the run is complete."""
        if self.done:
            return None
        start = time.perf_counter()
        if self._run is None:
            self._run = self._sampler.stream(self.prompt)
        record = next(self._run)
        self.compute_s += time.perf_counter() - start
        self.records.append(record)
        return record

    def updates(self, on_step: Callable[[], None] | None = None) -> Iterator[Update]:
        """Advance to the end, yielding redraw events; the last one is final and full.

        A run resumed after a rerun first redraws everything it has (the page is blank).
        ``on_step()`` runs after every decoded step, between redraws too: the gate's
        run-time cap raises there, so it holds within one step.
        """
        if self.records:
            started = self.clock()
            yield Update("full", self.records, final=self.done)
            self.throttle.drawn("full", started, self.clock())
        while not self.done:
            self.step()
            if on_step is not None:
                on_step()
            kind = "full" if self.done else self.throttle.poll(self.clock())
            if kind is None:
                continue
            started = self.clock()
            yield Update(kind, self.records, final=self.done)
            self.throttle.drawn(kind, started, self.clock())

    def result(self) -> SMCResult:
        if self._run is None:
            raise RuntimeError("the run has not decoded a step yet")
        return self._run.result()

    def finish(self) -> RunEntry:
        """The history entry of this run: 'stopped' (records so far) unless it completed."""
        result = self.result() if self.records else None
        entry = RunEntry(
            run_id=self.run_id,
            model=self.model_name,
            prompt=self.prompt_label,
            config=self.config.to_dict(),
            records=list(self.records),
            result=result,
            status="finished" if self.done else "stopped",
            reference=self.reference,
            toy=self.toy,
            created=self.created,
            compute_s=self.compute_s,
            **self.context,
        )
        return entry
