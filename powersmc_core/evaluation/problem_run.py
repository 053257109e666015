r"""Methods under evaluation, built from one ``EvalSettings``, and one problem run -> one row.

- ``base``:    TemperatureSampling(T=1, N=1)           — one ancestral sample of p
- ``lowtemp``: TemperatureSampling(T=1/alpha, N=1)     — token-level sharpening
- ``smc``:     PowerSMC(alpha, N particles, schedule)  — sequence-level pi_alpha ∝ p^alpha
- ``mh``:      MHPowerSampler(alpha, mh_steps)         — Karan & Du's MCMC for pi_alpha
- ``bon``:     BestOfN(N)                              — argmax log p over N samples
- ``greedy``:  GreedyDecoding                          — argmax p token by token

The names, samplers and the settings each method reads are the library's one registry
(``powersmc_core.samplers.registry``); this module builds runs and rows from them.

Every run is also graded under the answer decision rules (``answers.RULES``): the
sampler's own draw (``chosen``), the weighted vote (argmax of the weighted answer
posterior) and the majority vote over the run's particles. For one-sequence methods
all three coincide; for best-of-N the weights are uniform, so its weighted vote is its
majority vote: the majority vote over N plain samples, at the same N × max_new_tokens
budget as SMC with N particles (``effective_rule`` says which rule a line stands for).

Each method depends on a subset of the settings (base ignores alpha and N), and its
config hash covers that subset only, so a sweep over alpha × N runs base once per
problem. Every run's seed is derived from (settings.seed, problem id): reproducible and
independent of the order or the worker a run lands on.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import InitVar, asdict, dataclass, fields
from typing import Any

from powersmc_core.answers.extract import RULES, answer_posterior, decide
from powersmc_core.answers.grading import is_equivalent
from powersmc_core.engine.config import SCHEDULES, SMCConfig
from powersmc_core.engine.stopping import make_stop_rule
from powersmc_core.evaluation.tasks import Problem
from powersmc_core.models.base import LanguageModel
from powersmc_core.models.prompts import encode_prompt
from powersmc_core.samplers.registry import METHODS, make_sampler, method_view

__all__ = [
    "ANSWER_INSTRUCTION",
    "LEGACY_NAMES",
    "METHODS",
    "METHOD_FIELDS",
    "EvalSettings",
    "config_hash",
    "effective_rule",
    "method_config",
    "parse_methods",
    "prompt_ids_for",
    "run_one",
    "run_seed",
]


# Which settings each method actually reads (the rest would only split identical runs):
# declared with each method in the registry; a live view, so later registrations count.
METHOD_FIELDS: Mapping[str, tuple[str, ...]] = method_view(lambda m: m.fields)

# Names the settings had before ``n_particles``: accepted by ``from_dict`` and used in the
# config hash, so results files written under the old name resume without re-running.
LEGACY_NAMES = {"n_particles": "particles"}
_ALIASES = {old: new for new, old in LEGACY_NAMES.items()}

ANSWER_INSTRUCTION = "Solve the problem step by step, then put the final answer in \\boxed{}."


@dataclass(frozen=True)
class EvalSettings:
    """One point of a sweep: the knobs of every method (each reads its own subset)."""

    alpha: float = 4.0
    n_particles: int = 16
    schedule: str = "constant"
    ess_threshold: float = 0.5
    resampling: str = "systematic"
    max_new_tokens: int = 128
    mh_steps: int = 4
    mh_block_size: int | None = None
    seed: int = 0
    # SMC's block size and the rollout methods' K, M, H, ε (None: the method's defaults).
    block_size: int = 1
    rollout_k: int | None = None
    rollout_m: int | None = None
    rollout_h: int | None = None
    lookahead_epsilon: float | None = None
    # The old name of ``n_particles``, accepted by keyword only for existing callers.
    particles: InitVar[int | None] = None

    def __post_init__(self, particles: int | None) -> None:
        if particles is not None:
            object.__setattr__(self, "n_particles", particles)
        self.smc_config()  # SMCConfig owns the validation of the shared fields
        if self.schedule not in SCHEDULES:  # pragma: no cover - SMCConfig already checks
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}")
        if (
            isinstance(self.mh_steps, bool)
            or not isinstance(self.mh_steps, int)
            or self.mh_steps < 0
        ):
            raise ValueError(f"mh_steps must be an integer >= 0, got {self.mh_steps!r}")
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "ess_threshold", float(self.ess_threshold))

    def smc_config(self, seed: int | None = None) -> SMCConfig:
        """The sampler settings of these knobs, with ``seed`` (default: this point's own)."""
        return SMCConfig(
            alpha=self.alpha,
            n_particles=self.n_particles,
            schedule=self.schedule,
            ess_threshold=self.ess_threshold,
            resampling=self.resampling,
            max_new_tokens=self.max_new_tokens,
            seed=self.seed if seed is None else seed,
            block_size=self.block_size,
            rollout_k=self.rollout_k,
            rollout_m=self.rollout_m,
            rollout_h=self.rollout_h,
            lookahead_epsilon=self.lookahead_epsilon,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalSettings:
        """Settings from a dict; old names (``particles``) are read as the new ones."""
        data = {_ALIASES.get(k, k): v for k, v in data.items()}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown settings {unknown}; known: {sorted(known)}")
        return cls(**data)


def parse_methods(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """'base,smc' -> ['base', 'smc'], validated, order kept, duplicates dropped."""
    names = [m.strip() for m in (text.split(",") if isinstance(text, str) else text)]
    names = [m for m in names if m]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise ValueError(f"unknown methods {bad or names}; choose from {list(METHODS)}")
    return list(dict.fromkeys(names))


def method_config(method: str, settings: EvalSettings) -> dict[str, Any]:
    """The settings ``method`` reads, by name."""
    if method not in METHOD_FIELDS:
        raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")
    return {name: getattr(settings, name) for name in METHOD_FIELDS[method]}


def effective_rule(method: str, rule: str) -> str:
    """The rule whose answers ``rule`` gives for ``method`` (they coincide where noted above)."""
    if rule not in RULES:
        raise ValueError(f"unknown answer rule {rule!r}; choose one of {list(RULES)}")
    if method == "smc":
        return rule
    if method == "bon":
        return "majority-vote" if rule == "weighted-vote" else rule
    return "chosen"


# (setting, value) pairs a hash leaves out: settings added after rows were written, unset.
_UNSET = {
    ("block_size", 1),
    ("rollout_k", None),
    ("rollout_m", None),
    ("rollout_h", None),
    ("lookahead_epsilon", None),
}


def config_hash(method: str, settings: EvalSettings, model: str) -> str:
    """Short stable hash of (model, method, the settings it reads): the resume key's third part."""
    # Under the settings' old names, so a setting's rename keeps every hash (and resume).
    config = {LEGACY_NAMES.get(k, k): v for k, v in method_config(method, settings).items()}
    # Settings added later hash as before while unset, so older rows still resume.
    config = {k: v for k, v in config.items() if (k, v) not in _UNSET}
    payload = json.dumps({"model": model, "method": method, **config}, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


def run_seed(settings: EvalSettings, problem_id: str) -> int:
    """Seed of one run: a hash of (settings.seed, problem id), in [0, 2^31)."""
    digest = hashlib.sha256(f"{settings.seed}:{problem_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def prompt_ids_for(model: LanguageModel, problem: Problem) -> list[int]:
    """Token ids of the problem through the one prompt path (``prompts.encode_prompt``):
    its own ids (toy), else the chat-formatted text + instruction."""
    if problem.prompt_ids is not None:
        return encode_prompt(model, list(problem.prompt_ids))
    if getattr(model, "encode_prompt", None) is None:
        raise ValueError(
            f"problem {problem.id!r} is text but model {model.name!r} has no encode_prompt(); "
            "use a text model (e.g. smollm2) or the 'toy' task for token-id models"
        )
    return encode_prompt(model, f"{problem.prompt}\n{ANSWER_INSTRUCTION}", chat=True)


def run_one(
    model: LanguageModel,
    problem: Problem,
    method: str,
    settings: EvalSettings,
    model_label: str | None = None,
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run ``method`` on ``problem`` and grade it: one result row (see ``runner.COLUMNS``).

    ``on_step`` is called after every record the sampler streams (a token step, or one
    MH proposal): a caller that must stop a run mid-way (a run-time cap) raises there.
    """
    label = model_label or model.name
    seed = run_seed(settings, problem.id)
    ids = prompt_ids_for(model, problem)
    # A fresh sampler per run (stop rules are stateful); text problems stop at \boxed{...}.
    sampler = make_sampler(
        method,
        model,
        settings.smc_config(seed),
        stop=make_stop_rule(boxed=problem.prompt_ids is None),
        mh_steps=settings.mh_steps,
        mh_block_size=settings.mh_block_size,
    )
    start = time.perf_counter()
    if on_step is None:
        result = sampler.run(ids)
    else:
        run = sampler.stream(ids)  # the same records and result as sampler.run(ids)
        for _ in run:
            on_step()
        result = run.result()
    latency = time.perf_counter() - start
    completion_ids = result.chosen_completion
    texts = model.decode_batch([list(c) for c in result.completions])
    completion = texts[result.chosen]
    log_w = [math.log(w) if w > 0 else -math.inf for w in result.weights]
    # A completion cut at max_new_tokens is never graded ("unfinished"), only ended ones.
    posterior = answer_posterior(
        texts, log_w, problem.extractor, chosen=result.chosen, finished=result.finished
    )
    answer = decide(posterior, "chosen")
    weighted = decide(posterior, "weighted-vote")
    majority = decide(posterior, "majority-vote")
    tokens = len(completion_ids)
    log_p = float(result.log_p[result.chosen])
    extras = result.extras or {}
    cfg = method_config(method, settings)
    return {
        "model": label,
        "task": problem.task,
        "problem_id": problem.id,
        "difficulty": int(problem.difficulty),
        "method": method,
        "config_hash": config_hash(method, settings, label),
        "config": json.dumps(cfg, sort_keys=True),
        "alpha": float(cfg["alpha"]) if "alpha" in cfg else math.nan,
        "n_particles": int(cfg["n_particles"]) if "n_particles" in cfg else -1,
        "schedule": str(cfg.get("schedule", "")),
        "max_new_tokens": int(settings.max_new_tokens),
        "seed": seed,
        "reference": problem.answer,
        "answer": answer,
        "correct": bool(is_equivalent(answer, problem.answer)),
        "completion": completion,
        "log_p": log_p,
        "tokens": tokens,
        # log p includes EOS when emitted; per token divides by the visible tokens (>= 1).
        "log_p_per_token": log_p / max(tokens, 1),
        "latency_s": latency,
        "token_forwards": METHODS[method].cost(result),  # the registry's compute accounting
        "n_resamples": int(result.n_resamples),
        "ess_min": float(result.ess_min) if method == "smc" else math.nan,
        "mh_acceptance": float(extras.get("acceptance_rate", math.nan)),
        "finished": bool(result.finished[result.chosen]),
        "answer_weighted": weighted,
        "correct_weighted": bool(is_equivalent(weighted, problem.answer)),
        "answer_majority": majority,
        "correct_majority": bool(is_equivalent(majority, problem.answer)),
        "answer_mass": posterior.probability(weighted),
        "no_answer_mass": posterior.no_answer,
    }
