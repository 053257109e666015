"""What the Streamlit pages need besides widgets: models, prompts, presets, runs, history.

The pages stay thin (widgets -> these helpers -> ``plotting.live`` -> charts); nothing
here draws or imports Streamlit at module level, so every function is testable alone.

- Models: ``load_cached`` wraps ``models.loading.load_model`` in ``st.cache_resource``
  (one instance per name); ``prompt_ids`` turns a text prompt (LLM, chat template) or a
  token prefix (toy model) into prompt ids.
- Presets: problems with known answers. For a toy model the known answer is exact: the
  mode of p, which is the mode of pi_alpha ∝ p^alpha for every alpha > 0.
- ``LiveRun`` drives one Power-SMC run as a generator of redraw events on an adaptive
  clock (``Throttle``): cheap O(N) charts at most every ``light_s``, O(T·N) charts at
  most every ``full_s`` stretched to ``cost_factor`` × their last cost, and full redraws
  never more than ``budget`` (15%) of the wall time. The run object owns its records, so a
  Streamlit rerun (the Stop button) never loses a decoded step.
- History: finished, stopped and uploaded runs, downloadable as a trace (JSON lines)
  and a summary (CSV), and replayable step by step.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field, fields
from itertools import product
from typing import Any

import pandas as pd

from .config import SMCConfig
from .evaluation.grading import extract_answer, is_equivalent
from .exact import enumerate_sequences
from .methods import make_sampler
from .models.base import LanguageModel
from .models.loading import DEFAULT_MODEL, ModelLoadError, available_models, load_model
from .models.toy import ToyLM
from .records import SMCResult, StepRecord, _json_restore
from .sampler import PowerSMC
from .stopping import StopRule, make_stop_rule
from .trace import Trace, TraceError, dumps_trace

__all__ = [
    "COMPARE_METHODS",
    "DEFAULT_MODEL",
    "MAX_PARTICLES",
    "MAX_UPLOAD_BYTES",
    "STOP_RULES",
    "TEXT_PRESETS",
    "THEORY_MODELS",
    "CompareSettings",
    "LiveRun",
    "ModelLoadError",
    "Preset",
    "RunEntry",
    "TheorySettings",
    "Throttle",
    "Update",
    "check_run_limits",
    "compare_runs",
    "comparison_frame",
    "custom_models_allowed",
    "entry_from_trace",
    "entry_summary_csv",
    "entry_trace_text",
    "evaluation_api",
    "grade",
    "history",
    "is_toy",
    "load_cached",
    "load_uploaded_trace",
    "make_stop",
    "model_choices",
    "particle_frame",
    "prefix_label",
    "prompt_ids",
    "remember",
    "run_summary",
    "summary_frame",
    "theory_lab",
    "token_labeler",
    "toy_prefix_options",
    "toy_reference",
]

# Limits of the app (the core accepts more): memory and redraw cost grow as N·T.
MAX_PARTICLES = 256
MAX_NEW_TOKENS = 2048
MAX_HISTORY = 20
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
CUSTOM_MODEL_ENV = "POWERSMC_ALLOW_CUSTOM_MODELS"


# ---- models ----------------------------------------------------------------------------
def custom_models_allowed() -> bool:
    """Hub ids and local folders in the picker unless POWERSMC_ALLOW_CUSTOM_MODELS=0."""
    if os.environ.get(CUSTOM_MODEL_ENV, "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    from .deploy import demo_settings  # demo mode never offers free-form model names

    return not demo_settings().enabled


def model_choices() -> dict[str, str]:
    """Picker entries name -> description: the embedded model and the toy models."""
    choices = {
        m["name"]: m["description"] for m in available_models() if m["kind"] in ("embedded", "toy")
    }
    choices.setdefault(
        "toy-random:3,8,0", "random enumerable toy: tokens a, b and EOS, up to 8 tokens (exact)"
    )
    return choices


_cached_loader: Callable[[str], LanguageModel] | None = None


def load_cached(name: str) -> LanguageModel:
    """``load_model(name)`` behind ``st.cache_resource``: one instance per name per server.

    Raises ``ModelLoadError`` (a message the user can act on) for an unknown name.
    """
    global _cached_loader
    name = (name or "").strip()
    if not name:
        raise ModelLoadError("no model name given: pick a model in the sidebar")
    if _cached_loader is None:
        import streamlit as st  # lazy: the rest of this module never needs Streamlit

        _cached_loader = st.cache_resource(show_spinner=False, max_entries=4)(load_model)
    return _cached_loader(name)


def is_toy(model: LanguageModel) -> bool:
    return isinstance(model, ToyLM)


def token_labeler(model: LanguageModel) -> Callable[[int], str]:
    """token id -> its text, memoised (hover text decodes thousands of cells)."""
    if isinstance(model, ToyLM):
        return model.token_name
    cache: dict[int, str] = {}

    def label(token: int) -> str:
        if token not in cache:
            cache[token] = model.decode_batch([[token]])[0]
        return cache[token]

    return label


def toy_prefix_options(model: ToyLM, max_options: int = 64) -> list[tuple[int, ...]]:
    """Token prefixes a toy run can start from, shortest first (leaving >= 2 tokens to decode)."""
    letters = range(model.vocab_size - 1)  # every id but EOS
    out: list[tuple[int, ...]] = []
    for length in range(max(0, model.max_len - 2) + 1):
        for prefix in product(letters, repeat=length):
            if len(out) >= max_options:
                return out
            out.append(prefix)
    return out


def prefix_label(model: ToyLM, prefix: Sequence[int]) -> str:
    return " ".join(model.token_names[t] for t in prefix) if prefix else "(empty prompt)"


def prompt_ids(model: LanguageModel, prompt: str | Sequence[int], chat: bool = True) -> list[int]:
    """Prompt ids: a toy model takes a token prefix, an LLM a text through its chat template."""
    if isinstance(model, ToyLM):
        if isinstance(prompt, str):
            raise ValueError(f"{model.name} takes a token prefix, not text; pick one from the list")
        return list(model._check_prompt(prompt))
    if not isinstance(prompt, str):
        return [int(t) for t in prompt]
    if not prompt.strip():
        raise ValueError("the prompt is empty: type a prompt or pick a preset problem")
    encode = getattr(model, "encode_prompt", None)
    if encode is None:
        raise ValueError(f"model {model.name!r} cannot encode text prompts")
    return list(encode(prompt, chat=chat))


# ---- presets and grading ---------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """A problem with a known answer (graded with ``evaluation.grading``)."""

    name: str
    prompt: str
    answer: str


_BOXED = " Put the final answer in \\boxed{}."
TEXT_PRESETS: tuple[Preset, ...] = (
    Preset("Addition: 17 + 25", "What is 17 + 25?" + _BOXED, "42"),
    Preset("Order of operations: 6 × 7 − 5", "What is 6 * 7 - 5?" + _BOXED, "37"),
    Preset(
        "Word problem: apples",
        "Tom has 3 bags with 4 apples in each bag. He eats 2 apples. "
        "How many apples does he have left?" + _BOXED,
        "10",
    ),
    Preset(
        "Capital of France",
        "What is the capital of France? Answer with one word." + _BOXED,
        "Paris",
    ),
    Preset("Days in a week", "How many days are there in two weeks?" + _BOXED, "14"),
)


def toy_reference(model: ToyLM, prefix: Sequence[int]) -> str:
    """Exact known answer of a toy prompt: argmax_y p(y|prefix), the mode of every pi_alpha."""
    table = enumerate_sequences(model, prefix)
    best = int(table.log_p.argmax())
    return model.decode_batch([table.sequences[best]])[0]


def grade(
    text: str | None, reference: str | None, toy: bool = False
) -> tuple[str | None, bool | None]:
    """(extracted answer, correct?) — None, None without a reference."""
    if text is None:
        return None, None
    answer = text.strip() if toy else extract_answer(text, "auto")
    if reference is None:
        return answer, None
    if toy:
        return answer, answer == reference.strip()
    return answer, is_equivalent(answer, reference)


STOP_RULES = ("EOS only", "\\boxed{} answer", "stop strings")


def make_stop(rule: str, stop_strings: str = "") -> StopRule | None:
    """A fresh stop rule (they are stateful: one per run). ``stop_strings`` is comma-separated."""
    if rule not in STOP_RULES:
        raise ValueError(f"stop rule must be one of {list(STOP_RULES)}, got {rule!r}")
    if rule == "\\boxed{} answer":
        return make_stop_rule(boxed=True)
    if rule == "stop strings":
        strings = [
            s.encode().decode("unicode_escape") for s in stop_strings.split(",") if s.strip()
        ]
        if not strings:
            raise ValueError("stop strings: give at least one, comma-separated (\\n allowed)")
        return make_stop_rule(stop_strings=strings)
    return None


def check_run_limits(n_particles: Any, max_new_tokens: Any) -> None:
    """The app's own bounds on N and length (SMCConfig checks everything else)."""
    for name, value, high in (
        ("n_particles (N)", n_particles, MAX_PARTICLES),
        ("max_new_tokens", max_new_tokens, MAX_NEW_TOKENS),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise ValueError(f"{name} must be an integer in [1, {high}] in the app, got {value!r}")


# ---- live runs -------------------------------------------------------------------------
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
        throttle: Throttle | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.model = model
        self.config = config
        self.prompt = list(prompt)
        self.model_name = model_name
        self.prompt_label = prompt_label
        self.reference = reference
        self.toy = is_toy(model)
        self.throttle = throttle or Throttle()
        self.clock = clock
        self.records: list[StepRecord] = []
        self.compute_s = 0.0  # time inside the sampler only (the run's wall time includes redraws)
        self.run_id = uuid.uuid4().hex[:8]
        self.created = time.time()
        self._run = PowerSMC(model, config, stop=stop).stream(self.prompt)

    @property
    def done(self) -> bool:
        return bool(self.records) and self.records[-1].done

    def step(self) -> StepRecord | None:
        """Decode one token for all particles; None once the run is complete."""
        if self.done:
            return None
        start = time.perf_counter()
        record = next(self._run)
        self.compute_s += time.perf_counter() - start
        self.records.append(record)
        return record

    def updates(self) -> Iterator[Update]:
        """Advance to the end, yielding redraw events; the last one is final and full.

        A run resumed after a rerun first redraws everything it has (the page is blank).
        """
        if self.records:
            started = self.clock()
            yield Update("full", self.records, final=self.done)
            self.throttle.drawn("full", started, self.clock())
        while not self.done:
            self.step()
            kind = "full" if self.done else self.throttle.poll(self.clock())
            if kind is None:
                continue
            started = self.clock()
            yield Update(kind, self.records, final=self.done)
            self.throttle.drawn(kind, started, self.clock())

    def result(self) -> SMCResult:
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
        )
        return entry


def particle_frame(record: StepRecord, max_chars: int = 240) -> pd.DataFrame:
    """Particles at one step sorted by weight: the leader first, finished ones marked."""
    n = record.n_particles
    weights = [math.exp(w) for w in record.log_weights]
    leader = max(range(n), key=weights.__getitem__)
    texts = record.texts or tuple("" for _ in range(n))
    rows = []
    for i in range(n):
        marks = (["★ leader"] if i == leader else []) + (
            ["✓ finished"] if record.finished[i] else ["decoding"]
        )
        text = texts[i]
        rows.append(
            {
                "particle": i,
                "weight": weights[i],
                "log p": record.log_p[i],
                "status": " · ".join(marks),
                "text": text if len(text) <= max_chars else "…" + text[-max_chars:],
            }
        )
    frame = pd.DataFrame(rows).sort_values("weight", ascending=False, kind="stable")
    return frame.reset_index(drop=True)


# ---- history ---------------------------------------------------------------------------
@dataclass
class RunEntry:
    """A run in the session's history: live (finished or stopped) or uploaded."""

    run_id: str
    model: str
    prompt: str
    config: dict[str, Any]
    records: list[StepRecord]
    result: SMCResult | None
    status: str  # finished | stopped | uploaded
    reference: str | None = None
    toy: bool = False
    created: float = field(default_factory=time.time)
    source: str = "live"
    compute_s: float | None = None  # sampling time without redraws (live runs only)

    @property
    def label(self) -> str:
        cfg = self.config
        stamp = time.strftime("%H:%M:%S", time.localtime(self.created))
        return (
            f"{stamp} · {self.model} · α={cfg.get('alpha')} N={cfg.get('n_particles')} · "
            f"{len(self.records)} steps · {self.status} [{self.run_id}]"
        )


HISTORY_KEY = "run_history"


def history(state: MutableMapping[str, Any]) -> list[RunEntry]:
    """The session's runs, newest first (created on first use)."""
    if HISTORY_KEY not in state:
        state[HISTORY_KEY] = []
    return state[HISTORY_KEY]


def remember(state: MutableMapping[str, Any], entry: RunEntry) -> None:
    """Add a run (replacing one with the same id) and keep the newest ``MAX_HISTORY``."""
    runs = [e for e in history(state) if e.run_id != entry.run_id]
    state[HISTORY_KEY] = [entry, *runs][:MAX_HISTORY]


def run_summary(entry: RunEntry) -> dict[str, Any]:
    """One row describing a run: chosen completion, log p, log Ẑ, latency, answer."""
    last = entry.records[-1] if entry.records else None
    result = entry.result
    if result is not None:
        chosen, text = result.chosen, result.chosen_text
        log_p, log_z, elapsed = result.log_p[chosen], result.log_z, result.elapsed
        if entry.compute_s is not None:
            elapsed = entry.compute_s
        n_tokens = len(result.completions[chosen])
        resamples = result.n_resamples
    elif last is not None:  # an uploaded trace without a result line: the heaviest particle
        chosen = max(range(last.n_particles), key=last.log_weights.__getitem__)
        text = last.texts[chosen] if last.texts else None
        log_p, log_z, elapsed = last.log_p[chosen], last.log_z, last.elapsed
        n_tokens = sum(1 for r in entry.records if r.tokens[chosen] >= 0)
        resamples = sum(r.resampled for r in entry.records)
    else:
        chosen = text = log_p = log_z = elapsed = None
        n_tokens = resamples = 0
    answer, correct = grade(text, entry.reference, entry.toy)
    return {
        "run": entry.run_id,
        "status": entry.status,
        "model": entry.model,
        "prompt": entry.prompt,
        "alpha": entry.config.get("alpha"),
        "N": entry.config.get("n_particles"),
        "schedule": entry.config.get("schedule"),
        "steps": len(entry.records),
        "chosen particle": chosen,
        "completion": text,
        "log p": log_p,
        "log p / token": (log_p / max(1, n_tokens)) if log_p is not None else None,
        "log Z-hat": log_z,
        "latency [s]": elapsed,  # sampling time; live redraws excluded
        "tokens/s": (len(entry.records) / elapsed) if elapsed else None,
        "resamples": resamples,
        "min ESS": min((r.ess for r in entry.records), default=None),
        "answer": answer,
        "reference": entry.reference,
        "correct": correct,
    }


def summary_frame(entries: Sequence[RunEntry]) -> pd.DataFrame:
    return pd.DataFrame([run_summary(e) for e in entries])


def entry_summary_csv(entry: RunEntry) -> str:
    return summary_frame([entry]).to_csv(index=False)


def entry_trace_text(entry: RunEntry) -> str:
    """The run as a trace file (JSON lines: header, one line per step, result)."""
    meta = {
        "model": entry.model,
        "prompt": entry.prompt,
        "status": entry.status,
        "run_id": entry.run_id,
        "reference": entry.reference,
        "toy": entry.toy,
        "compute_s": entry.compute_s,
    }
    return dumps_trace(entry.records, entry.config, meta=meta, result=entry.result)


def _result_from_dict(data: dict[str, Any] | None) -> SMCResult | None:
    if not isinstance(data, dict):
        return None
    names = {f.name for f in fields(SMCResult)}
    try:
        return SMCResult(**{k: _json_restore(v) for k, v in data.items() if k in names})
    except TypeError:
        return None  # a result line from another version: the records still replay


def entry_from_trace(trace: Trace, name: str = "upload") -> RunEntry:
    header = trace.header
    reference = header.get("reference")
    return RunEntry(
        run_id=str(header.get("run_id") or uuid.uuid4().hex[:8]),
        model=str(header.get("model", "unknown model")),
        prompt=str(header.get("prompt", name)),
        config=dict(trace.config),
        records=list(trace.records),
        result=_result_from_dict(trace.result),
        status="uploaded",
        reference=str(reference) if reference is not None else None,
        toy=bool(header.get("toy", False)),
        source=name,
        compute_s=header.get("compute_s") if isinstance(header.get("compute_s"), float) else None,
    )


def load_uploaded_trace(data: bytes, name: str = "upload") -> RunEntry:
    """Validate an uploaded trace (size, JSON, schema); raises ``TraceError`` saying why."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise TraceError(
            f"{name} is {len(data) / 1e6:.1f} MB; the upload limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB"
        )
    from .deploy import read_trace_safely  # also type-checks the header and the result line

    return entry_from_trace(read_trace_safely(bytes(data), max_bytes=MAX_UPLOAD_BYTES), name)


# ---- method comparison -----------------------------------------------------------------
COMPARE_METHODS: dict[str, str] = {
    "base": "plain decoding (T = 1)",
    "lowtemp": "token-level temperature 1/α",
    "smc": "Power-SMC",
    "mh": "MH power sampling",
    "bon": "best-of-N",
}


@dataclass(frozen=True)
class CompareSettings:
    alpha: float = 4.0
    n_particles: int = 8
    max_new_tokens: int = 48
    seed: int = 0
    mh_steps: int = 4
    ess_threshold: float = 0.5
    schedule: str = "constant"

    def smc_config(self) -> SMCConfig:
        return SMCConfig(
            alpha=self.alpha,
            n_particles=self.n_particles,
            max_new_tokens=self.max_new_tokens,
            seed=self.seed,
            ess_threshold=self.ess_threshold,
            schedule=self.schedule,
        )


def compare_runs(
    model: LanguageModel,
    prompt: Sequence[int],
    methods: Sequence[str],
    settings: CompareSettings,
    stop_factory: Callable[[], StopRule | None] = lambda: None,
) -> Iterator[tuple[str, SMCResult, float]]:
    """Run each method on the same prompt, yielding (method, result, wall seconds) in turn."""
    unknown = [m for m in methods if m not in COMPARE_METHODS]
    if unknown or not methods:
        raise ValueError(
            f"unknown methods {unknown or list(methods)}; choose from {list(COMPARE_METHODS)}"
        )
    config = settings.smc_config()  # validates alpha, N, length, seed for every method
    for method in methods:
        sampler = make_sampler(
            method, model, config, stop=stop_factory(), mh_steps=settings.mh_steps
        )
        start = time.perf_counter()
        result = sampler.run(prompt)
        yield method, result, time.perf_counter() - start


def comparison_frame(
    runs: Sequence[tuple[str, SMCResult, float]],
    model: LanguageModel,
    reference: str | None = None,
) -> pd.DataFrame:
    """The Compare table: latency (and its ratio to plain decoding), speed, likelihood, answer."""
    toy = is_toy(model)
    base_latency = next((s for m, _, s in runs if m == "base"), None)
    rows = []
    for method, result, seconds in runs:
        completion = result.chosen_completion
        text = result.chosen_text
        if text is None:
            text = model.decode_batch([completion])[0]
        answer, correct = grade(text, reference, toy)
        n_tokens = max(1, len(completion))
        log_p = result.log_p[result.chosen]
        rows.append(
            {
                "key": method,
                "method": COMPARE_METHODS[method],
                "latency [s]": seconds,
                "× plain": seconds / base_latency if base_latency else math.nan,
                "tokens/s": len(completion) / seconds if seconds > 0 else math.nan,
                "tokens": len(completion),
                "log p": log_p,
                "log p / token": log_p / n_tokens,
                "completion": text,
                "answer": answer,
                "correct": correct,
            }
        )
    return pd.DataFrame(rows)


def evaluation_api() -> Any | None:
    """HOOK for the lead: the task-set comparison (``evaluation.api.run_task_comparison``).

    The Compare page shows a task-set section only when this returns the module, so wiring
    it in is one call in ``app_pages/compare.py`` (see the ``HOOK`` comment there).
    """
    try:
        from .evaluation import api
    except ImportError:
        return None
    return api if hasattr(api, "run_task_comparison") else None


# ---- theory lab ------------------------------------------------------------------------
THEORY_MODELS = ("toy-trap", "toy-random:3,8,0", "toy-random:4,5,1", "toy-random:4,4,0")


@dataclass(frozen=True)
class TheorySettings:
    """The Theory lab's Monte-Carlo budget: N for the estimate, runs per point, max N of the sweep."""

    alpha: float = 4.0
    n_particles: int = 16
    runs: int = 20
    n_max: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        SMCConfig(alpha=self.alpha, n_particles=self.n_particles, seed=self.seed)
        check_run_limits(self.n_particles, 1)
        check_run_limits(self.n_max, 1)
        if (
            isinstance(self.runs, bool)
            or not isinstance(self.runs, int)
            or not 2 <= self.runs <= 500
        ):
            raise ValueError(f"runs must be an integer in [2, 500], got {self.runs!r}")
        if self.n_max < 2:
            raise ValueError(f"max N must be >= 2, got {self.n_max}")

    def n_values(self) -> list[int]:
        """Powers of two from 2 to n_max (the TV-vs-N sweep)."""
        return [2**k for k in range(1, int(math.log2(self.n_max)) + 1)]


def theory_lab(model: ToyLM, settings: TheorySettings) -> Iterator[tuple[str, Any]]:
    """The lab's Monte-Carlo checks one at a time, as (name, result), for a progress display.

    estimate: SMC estimate of pi_alpha (``theory.smc_estimate``); tv_vs_n: mean TV against N;
    weight_variance: Var of w = p^alpha/q_tau over tau on the model's next-token rows;
    ess_traces: ESS/N per step for each bridging schedule.
    """
    import numpy as np

    from . import theory

    table = enumerate_sequences(model, ())
    config = SMCConfig(alpha=settings.alpha, n_particles=settings.n_particles, seed=settings.seed)
    yield "estimate", theory.smc_estimate(model, config, settings.runs, table=table)
    yield (
        "tv_vs_n",
        theory.tv_vs_n(
            model,
            settings.alpha,
            settings.n_values(),
            settings.runs,
            seed=settings.seed,
            table=table,
        ),
    )
    rows = theory.next_token_rows(model, (), model.max_len, seed=settings.seed)
    taus = np.geomspace(0.05 / settings.alpha, 20.0 / settings.alpha, 61)
    yield "weight_variance", theory.incremental_weight_variance(rows, settings.alpha, taus)
    yield (
        "ess_traces",
        theory.ess_traces(
            model,
            settings.alpha,
            runs=settings.runs,
            seed=settings.seed,
            n_particles=settings.n_particles,
        ),
    )
