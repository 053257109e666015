"""A run's weighted particles against its exact target, step by step (enumerable models).

At step t the particle system (records' slots before resampling) is a weighted
approximation of the intermediate target over the *states at time t*: a state is an
unfinished prefix y_1:t, or a completion that ended (EOS, stop rule) at some s <= t and
stays frozen. The engine's weights make it properly weighted for

    gamma_t(s) ∝ p(s)^alpha_t,   p(s) = prefix probability (EOS included once emitted),

so a particle estimate at an unfinished step is compared with gamma_t, never with pi_alpha
(with bridging alpha_t < alpha, and an unfinished prefix is not a completion). At the
record that ends the run (``done``) the catch-up p(y)^(alpha - alpha_T) has landed: the
particles then approximate pi_alpha(y) ∝ p(y)^alpha over *every* completion (those longer
than the run's last step included: a run that ends because all particles finished still
targets them). The exponent at step t is read from the record, alpha_t + catch_up, so any
schedule (constant, linear, adaptive) is handled by the run's own alpha_t.

The exact side comes from ``enumerate_sequences`` (the stopped law when a stop rule is
given). p(s) of an unfinished prefix is the sum of P(y) over its completions (the
stopped process is normalised), so one enumeration serves every step and exponent.
TV_t = 1/2 sum_s |gamma_t(s) - hat gamma_t(s)| over all states at time t.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from powersmc_core.engine.records import StepRecord
from powersmc_core.engine.stopping import StopRule
from powersmc_core.models.base import LanguageModel
from powersmc_core.models.toy import ToyLM
from powersmc_core.theory.exact import SequenceTable, enumerate_sequences

__all__ = [
    "MAX_EXACT_PREFIXES",
    "ExactTarget",
    "StepComparison",
    "compare_step",
    "exact_target",
    "particle_paths",
    "prefixes_to_enumerate",
    "target_tv",
]

# One model call per prefix walked; ~4k prefixes enumerate in about a second (V = 4, L = 8).
MAX_EXACT_PREFIXES = 4096

State = tuple[tuple[int, ...], bool]  # (tokens without EOS, finished)


def prefixes_to_enumerate(model: ToyLM, prompt: Sequence[int], max_new_tokens: int) -> int:
    """Prefixes the enumeration walks, sum_{k=0}^{D} V'^k with D = min(T, L - m) - 1.

    V' non-EOS tokens, L the toy's max_len, m the prompt length, T = max_new_tokens: an
    upper bound (zero-probability branches are pruned) known before any model call.
    """
    depth = min(max_new_tokens, model.max_len - len(prompt)) - 1
    branching = model.vocab_size - 1
    return sum(branching**k for k in range(max(depth, 0) + 1))


class ExactTarget:
    """The enumerated completions of one (model, prompt, max_new_tokens, stop rule),
    grouped into the states at every time t (see the module docstring)."""

    def __init__(self, table: SequenceTable, eos: Sequence[int], max_new_tokens: int) -> None:
        self.table = table
        self.eos = frozenset(int(e) for e in eos)
        self.max_new_tokens = max_new_tokens
        self.log_p = table.log_p.numpy().astype(np.float64)  # log P(y), the stopped law
        self.completions: list[State] = list(zip(table.sequences, table.finished, strict=True))
        self._groups: dict[int, tuple[list[State], np.ndarray]] = {}

    def states(self, t: int) -> tuple[list[State], np.ndarray]:
        """(states at time t, log p(s) of each): completion rows grouped by their state."""
        if t not in self._groups:
            keys: dict[State, int] = {}
            group = np.empty(len(self.completions), dtype=np.int64)
            for row, (emitted, state) in enumerate(
                zip(self.table.emitted, self.completions, strict=True)
            ):
                key = state if len(emitted) <= t else (tuple(emitted[:t]), False)
                group[row] = keys.setdefault(key, len(keys))
            log_mass = np.full(len(keys), -np.inf)
            np.logaddexp.at(log_mass, group, self.log_p)
            self._groups[t] = (list(keys), log_mass)
        return self._groups[t]


def exact_target(
    model: LanguageModel,
    prompt: Sequence[int],
    max_new_tokens: int,
    stop: StopRule | None = None,
    max_prefixes: int = MAX_EXACT_PREFIXES,
) -> ExactTarget | None:
    """The exact target of runs on a ToyLM, or None when the enumeration is not cheap
    (not a ToyLM, or more than ``max_prefixes`` prefixes to walk)."""
    if not isinstance(model, ToyLM):
        return None
    if prefixes_to_enumerate(model, prompt, max_new_tokens) > max_prefixes:
        return None
    table = enumerate_sequences(model, prompt, max_new_tokens, stop=stop)
    return ExactTarget(table, model.eos_token_ids, max_new_tokens)


def particle_paths(records: Sequence[StepRecord]) -> list[list[tuple[int, ...]]]:
    """Tokens of every slot at every step (EOS included once emitted), walked forward:
    slot j at step t+1 continues slot ancestors_t[j]. O(T·N·T) on tuples (T <= 8 here)."""
    paths: list[list[tuple[int, ...]]] = []
    previous: list[tuple[int, ...]] | None = None
    for record in records:
        if previous is None:
            start: list[tuple[int, ...]] = [()] * record.n_particles
        else:
            start = [previous[a] for a in records[len(paths) - 1].ancestors]
        grown = [(*p, tok) if tok >= 0 else p for p, tok in zip(start, record.tokens, strict=True)]
        paths.append(grown)
        previous = grown
    return paths


@dataclass(frozen=True)
class StepComparison:
    """Exact target and particle estimate over the states at one step (same order)."""

    step: int
    exponent: float  # alpha_t, or alpha at the final record
    final: bool  # the record that ends the run: the target is pi_alpha
    states: list[State]
    exact: np.ndarray  # gamma_t (or pi_alpha), sums to 1
    estimate: np.ndarray  # sum_i W_i [state_i = s], sums to 1

    @property
    def tv(self) -> float:
        """1/2 sum_s |exact(s) - estimate(s)|."""
        return 0.5 * float(np.abs(self.exact - self.estimate).sum())


def _state(path: tuple[int, ...], finished: bool, eos: frozenset[int]) -> State:
    tokens = path[:-1] if path and path[-1] in eos else path
    return (tokens, bool(finished))


def compare_step(
    target: ExactTarget,
    records: Sequence[StepRecord],
    step: int,
    paths: Sequence[Sequence[tuple[int, ...]]] | None = None,
) -> StepComparison:
    """gamma_t ∝ p(s)^alpha_t (pi_alpha at the run's final record) beside the weighted
    particles of record ``step`` (1-based); ``paths`` from ``particle_paths`` saves a walk."""
    if not 1 <= step <= len(records):
        raise IndexError(f"step must be in [1, {len(records)}], got {step}")
    record = records[step - 1]
    final = record.done
    exponent = record.alpha + record.catch_up
    # The final record: every completion is a state (the run targets pi_alpha over all).
    states, log_mass = target.states(target.max_new_tokens if final else step)
    logits = exponent * log_mass
    exact = np.exp(logits - np.logaddexp.reduce(logits))
    index = {s: i for i, s in enumerate(states)}
    if paths is None:
        paths = particle_paths(records[:step])
    log_w = np.asarray(record.log_weights, dtype=np.float64)
    weights = np.exp(log_w - np.logaddexp.reduce(log_w))
    estimate = np.zeros(len(states))
    for path, finished, w in zip(paths[step - 1], record.finished, weights, strict=True):
        key = _state(path, finished, target.eos)
        if key not in index:
            raise ValueError(f"particle state {key} at step {step} is not in the exact target")
        estimate[index[key]] += w
    return StepComparison(step, exponent, final, states, exact, estimate)


def target_tv(target: ExactTarget, records: Sequence[StepRecord]) -> list[float]:
    """TV(gamma_t, weighted particles) at every step t of ``records`` (pi_alpha at the end)."""
    paths = particle_paths(records)
    return [compare_step(target, records, t, paths).tv for t in range(1, len(records) + 1)]
