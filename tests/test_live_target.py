"""The Live page's exact-target panel: its TV is the TV of the run's trace against the
exact target by enumeration, at every step, for constant and bridging schedules; and
the last decoded step is drawn after the run-time cap.

The reference here is computed independently of ``theory.live_target``: a state's
probability by the chain rule over the enumeration's own next-token rows (not by summing
completions), its target by the exponent the schedule gives (alpha_t, alpha at the end),
and the final step by ``exact.power_distribution`` and ``exact.result_distribution``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from explorer import views
from explorer.gate import Gate
from explorer.inputs import make_stop
from explorer.limits import RunLimiter
from explorer.live import LiveRun, cached_exact_target
from explorer.settings import demo_settings
from powersmc_core import SMCConfig, ToyLM
from powersmc_core.io.trace import read_trace, write_trace
from powersmc_core.plotting import live as charts
from powersmc_core.theory.exact import (
    enumerate_sequences,
    power_distribution,
    result_distribution,
    total_variation,
)
from powersmc_core.theory.live_target import (
    MAX_EXACT_PREFIXES,
    exact_target,
    prefixes_to_enumerate,
    target_tv,
)

MODELS = {"toy-trap": ToyLM.trap, "toy-random": lambda: ToyLM.random(3, 6, seed=1)}
SCHEDULES = {
    "constant": {"schedule": "constant"},
    # The app's default ramp (16 tokens) outlasts these runs: the catch-up lands at the end.
    "linear": {"schedule": "linear", "alpha_start": 1.0, "ramp_tokens": 16},
    "adaptive": {"schedule": "adaptive", "alpha_start": 1.0, "ramp_tokens": 4, "target_ess": 0.7},
}


def live_run(model: ToyLM, schedule: str, n: int = 64, seed: int = 0) -> LiveRun:
    config = SMCConfig(alpha=4.0, n_particles=n, max_new_tokens=8, seed=seed, **SCHEDULES[schedule])
    run = LiveRun(model, config, [], model_name=model.name, prompt_label="")
    for _ in run.updates():
        pass
    return run


def reference_tv(model: ToyLM, records, result, alpha: float) -> list[float]:
    """TV per step by the chain rule over the enumeration's rows (see the module docstring)."""
    table = enumerate_sequences(model, [], 8)
    eos = model.eos_token_id
    out = []
    for t, record in enumerate(records, 1):
        if record.done:  # pi_alpha over completions vs the final weighted particles
            out.append(
                total_variation(
                    power_distribution(table, alpha),
                    result_distribution(table, result),
                )
            )
            continue
        # Every state at time t with log p(s) = sum_{k<len} log p(s_k | s_<k).
        log_p: dict[tuple, float] = {}
        for emitted, dists, ending in zip(
            table.emitted, table.step_logprobs, table.endings, strict=True
        ):
            cut = emitted[:t]
            finished = len(emitted) <= t and ending != "length"
            key = (tuple(x for x in cut if x != eos), finished)
            log_p[key] = sum(float(dists[k][cut[k]]) for k in range(len(cut)))
        states = list(log_p)
        logits = np.array([record.alpha * log_p[s] for s in states])
        exact = np.exp(logits - np.logaddexp.reduce(logits))
        # The particles' states at step t: walk the ancestors back from slot i.
        estimate = dict.fromkeys(states, 0.0)
        weights = np.exp(np.asarray(record.log_weights))
        for i, w in enumerate(weights / weights.sum()):
            tokens, slot = [], i
            for back in range(t - 1, -1, -1):
                tokens.append(records[back].tokens[slot])
                if back:
                    slot = records[back - 1].ancestors[slot]
            path = tuple(x for x in reversed(tokens) if x >= 0 and x != eos)
            estimate[(path, bool(record.finished[i]))] += w
        out.append(0.5 * sum(abs(e - estimate[s]) for e, s in zip(exact, states, strict=True)))
    return out


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("name", list(MODELS))
def test_the_panels_tv_is_the_tv_of_the_saved_trace_against_enumeration(name, schedule, tmp_path):
    model = MODELS[name]()
    run = live_run(model, schedule)
    records = run.records
    if schedule != "constant":  # bridging: the intermediate targets differ from pi_alpha
        assert records[0].alpha < 4.0 and records[-1].done
    if schedule == "linear":  # and the exponent still has to catch up at the last step
        assert records[-1].catch_up > 0
    # What the panel draws, live, from the run's own (cached) exact target.
    target = run.exact_target()
    assert target is not None
    figures = charts.target_figures(target, records, model.token_name)
    shown = list(figures["target_tv"].data[0].y)
    assert f"TV {shown[-1]:.3f}" in figures["target"].layout.title.text
    # The run saved as a trace, read back, and its TV recomputed with a fresh enumeration.
    path = write_trace(tmp_path / "run.jsonl", records, run.config)
    trace = read_trace(path)
    again = target_tv(exact_target(model, [], trace.config["max_new_tokens"]), trace.records)
    assert again == pytest.approx(shown, abs=1e-12)
    # And both equal the independent reference (chain rule, alpha_t, pi_alpha at the end).
    expected = reference_tv(model, trace.records, run.result(), trace.config["alpha"])
    assert shown == pytest.approx(expected, abs=1e-9)
    assert all(0.0 <= tv <= 1.0 for tv in shown)


@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_the_particles_approach_gamma_t_at_every_step(schedule):
    """With N = 4096 the weighted particles sit near gamma_t at every step: TV ~ N^-1/2
    (measured <= 0.02 on these seeds); a wrong intermediate target is >= 0.1 away."""
    model = ToyLM.trap()
    run = live_run(model, schedule, n=4096)
    tvs = target_tv(run.exact_target(), run.records)
    assert max(tvs) < 0.05, tvs


def test_the_panel_is_built_only_when_enumeration_is_cheap():
    big = ToyLM.random(8, 8, seed=0)
    assert prefixes_to_enumerate(big, [], 8) == sum(7**k for k in range(8))  # 960,800
    assert exact_target(big, [], 8) is None  # refused before any model call
    config = SMCConfig(alpha=4.0, n_particles=2, max_new_tokens=8)
    assert LiveRun(big, config, [], model_name="big", prompt_label="").exact_target() is None
    # After a 5-token prompt at most 3 tokens remain (the 3rd is EOS): 1 + 7 + 49 prefixes.
    assert prefixes_to_enumerate(big, [0, 1, 2, 3, 4], 8) == 57 <= MAX_EXACT_PREFIXES
    assert exact_target(big, [0, 1, 2, 3, 4], 8) is not None
    trap = ToyLM.trap()
    first = cached_exact_target(trap, [], 8)
    assert first is not None and cached_exact_target(trap, [], 8) is first  # built once


class Recorder(views.LiveCharts):
    """LiveCharts whose draws are recorded (step count, heavy) instead of shown."""

    def __init__(self) -> None:
        self.label, self.target, self.drawn, self.draws = None, None, None, []
        self._figures = None

    def _show(self, figures, records, tag) -> None:
        self.draws.append((len(records), "heatmap" in figures))


def test_the_last_step_is_drawn_after_the_run_time_cap():
    """The page's path: draw each event, the cap ends the run inside a step (decoded, not
    drawn), then ``settle`` draws that last step with every chart."""
    clock = [0.0]
    limiter = RunLimiter(max_concurrent=1, max_run_s=1.0, clock=lambda: clock[0])
    gate = Gate(demo_settings({"POWERSMC_DEMO": "1"}), limiter=limiter, visitor="session:cap")
    admitted = gate.live(
        ToyLM.random(3, 8, seed=0),
        "toy",
        {"n_particles": 4, "max_new_tokens": 8},
        [],
        "",
        "EOS only",
    )
    step = admitted.live.step

    def slow_step():
        clock[0] += 0.3  # the cap passes during the 4th step
        return step()

    admitted.live.step = slow_step
    admitted.live.throttle.poll = lambda now: "light" if len(admitted.live.records) < 3 else None
    drawn = Recorder()
    with gate.running(admitted) as run:
        for update in run.events():
            drawn.draw(update.records, admitted.config.to_dict(), update.kind == "full", "t")
    entry = admitted.finish()
    assert run.timed_out and len(entry.records) == 4 and not entry.records[-1].done
    assert drawn.draws[-1][0] < 4  # the events end before the step the cap cut
    drawn.settle(entry, {}, 10**9)
    assert drawn.draws[-1] == (4, True)
    drawn.settle(entry, {}, 10**9)  # nothing left to draw
    assert len(drawn.draws) == 3 and math.isfinite(entry.records[-1].ess)


def test_under_a_stop_rule_the_panel_compares_with_the_power_of_the_stopped_law():
    model = ToyLM.random(3, 6, seed=1)
    config = SMCConfig(alpha=4.0, n_particles=256, max_new_tokens=8, seed=0)
    run = LiveRun(
        model, config, [], model_name="t", prompt_label="", stop=make_stop("stop strings", "a b")
    )
    for _ in run.updates():
        pass
    assert any(s == "stop" for s in run.exact_target().table.endings)
    table = enumerate_sequences(model, [], 8, stop=make_stop("stop strings", "a b"))
    final = total_variation(
        power_distribution(table, 4.0), result_distribution(table, run.result())
    )
    tvs = target_tv(run.exact_target(), run.records)
    assert tvs[-1] == pytest.approx(final, abs=1e-12) and max(tvs) < 0.2
