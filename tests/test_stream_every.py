"""``stream_every=k``: the host reads the particle system every k steps, records unchanged.

The fast path keeps every per-step decision (resample?, finished?, NaN?) on the
device. These tests check that it is the same sampler: identical records and results
for every k on configurations that resample, bridge, adapt and finish early; that a
batched step really reads nothing back to the host; and that errors and mid-run
results still behave.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from powersmc_core import PowerSMC, SMCConfig, TemperatureSampling, ToyLM
from powersmc_core.engine.stopping import make_stop_rule
from powersmc_core.models.toy import ToyState


def run_all(model, config, every, prompt=()):
    run = PowerSMC(model, config, stream_every=every).stream(list(prompt))
    records = list(run)
    return records, run.result()


def comparable(records):
    """Records without wall-clock times, NaN (finished particles' Rényi entropy) as None."""
    return [
        dataclasses.replace(
            r, elapsed=0.0, renyi=tuple(None if math.isnan(h) else h for h in r.renyi)
        )
        for r in records
    ]


def same_result(a, b):
    fields = ("completions", "weights", "chosen", "log_p", "log_z", "n_resamples")
    fields += ("ess_trace", "finished", "n_steps", "texts", "extras")
    return {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}


CONFIGS = {
    "constant-systematic": dict(alpha=4.0, n_particles=16, ess_threshold=0.9, seed=1),
    "linear-multinomial-block2": dict(
        alpha=3.0,
        n_particles=12,
        schedule="linear",
        ramp_tokens=3,
        resampling="multinomial",
        block_size=2,
        ess_threshold=0.8,
        seed=2,
    ),
    "adaptive-residual": dict(
        alpha=4.0, n_particles=16, schedule="adaptive", resampling="residual", seed=3
    ),
    "stratified-kappa1": dict(alpha=2.0, n_particles=8, ess_threshold=1.0, seed=4),
    "truncated": dict(alpha=4.0, n_particles=16, max_new_tokens=3, ess_threshold=1.0, seed=5),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("every", [2, 3, 8, 1000])
def test_records_and_result_do_not_depend_on_stream_every(name, every, single_thread):
    # max_len 7: the particles finish at different steps, often all before max_new_tokens,
    # so batched runs decode past the end and must drop those steps.
    model = ToyLM.random(5, 7, seed=3, sharpness=0.7)
    config = SMCConfig(**CONFIGS[name])
    reference, ref_result = run_all(model, config, 1)
    records, result = run_all(model, config, every)
    assert any(r.resampled for r in reference) or config.ess_threshold == 0
    assert comparable(records) == comparable(reference)
    assert same_result(result, ref_result)


def test_runs_that_end_early_drop_the_steps_decoded_past_the_end(single_thread):
    model = ToyLM.random(4, 4, seed=0)
    config = SMCConfig(alpha=4.0, n_particles=8, max_new_tokens=50, seed=0)
    records, result = run_all(model, config, 16)
    assert len(records) <= 5 and records[-1].done  # EOS by step max_len + 1
    assert result.n_steps == len(records)
    assert [r.step for r in records] == list(range(1, len(records) + 1))


def test_temperature_baseline_accepts_stream_every():
    model = ToyLM.random(5, 7, seed=3)
    one = TemperatureSampling(model, temperature=0.5, n_particles=4, seed=0).run([])
    batched = TemperatureSampling(
        model, temperature=0.5, n_particles=4, seed=0, stream_every=5
    ).run([])
    assert batched.completions == one.completions and batched.weights == one.weights


HOST_READS = ("__bool__", "__float__", "__int__", "item", "tolist", "numpy", "cpu")


def test_a_batched_step_reads_nothing_back_to_the_host(monkeypatch):
    """Between flushes no tensor value reaches Python: on CUDA, nothing synchronises."""
    model = ToyLM.random(5, 7, seed=3, sharpness=0.7)
    config = SMCConfig(alpha=4.0, n_particles=16, ess_threshold=0.9, schedule="linear", seed=1)
    run = PowerSMC(model, config, stream_every=4).stream([])
    decode_step = run._decode_step
    calls: list[str] = []

    def guarded() -> None:
        with monkeypatch.context() as patch:
            for name in HOST_READS:
                original = getattr(torch.Tensor, name)

                def spy(self, *args, _name=name, _original=original, **kwargs):
                    calls.append(_name)
                    return _original(self, *args, **kwargs)

                patch.setattr(torch.Tensor, name, spy)
            decode_step()

    run._decode_step = guarded
    records = list(run)
    assert len(records) >= 4 and any(r.resampled for r in records)
    assert calls == [], f"host reads inside batched steps: {sorted(set(calls))}"

    # The guard is live: the per-token path reads decisions back every step.
    eager = PowerSMC(model, config, stream_every=1).stream([])
    decode_step = eager._decode_step
    eager._decode_step = guarded
    next(eager)
    assert calls


def test_result_mid_run_flushes_the_decoded_steps_and_iteration_continues(single_thread):
    model = ToyLM.random(5, 7, seed=3, sharpness=0.7)
    config = SMCConfig(alpha=2.0, n_particles=6, seed=0, max_new_tokens=6)
    run = PowerSMC(model, config, stream_every=4).stream([])
    first = next(run)
    partial = run.result()
    assert run.decoded == 4 and partial.n_steps == 4
    rest = list(run)
    reference, _ = run_all(model, config, 1)
    assert comparable([first, *rest]) == comparable(reference)


class NaNAfter(ToyLM):
    """Finite log-probabilities for the first ``good`` advances, NaN after."""

    good = 1

    def advance(self, state: ToyState, tokens, active):
        state, logp = super().advance(state, tokens, active)
        self.calls = getattr(self, "calls", 0) + 1
        return state, logp if self.calls <= self.good else torch.full_like(logp, math.nan)


def test_nan_logits_in_a_batch_deliver_the_good_steps_then_name_the_bad_one():
    base = ToyLM.random(4, 8, seed=1, sharpness=0.1)
    model = NaNAfter(base._table, base.max_len, base.token_names, "nan-after")
    run = PowerSMC(model, SMCConfig(n_particles=4, seed=0, ess_threshold=0.0), stream_every=8)
    stream = run.stream([])
    delivered = []
    with pytest.raises(FloatingPointError, match=r"NaN log-probabilities .* at step 3"):
        for record in stream:
            delivered.append(record.step)
    assert delivered == [1, 2]


def test_bad_stream_every_values_are_named_errors():
    model = ToyLM.random(4, 4, seed=0)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match=r"stream_every must be an integer >= 1"):
            PowerSMC(model, SMCConfig(), stream_every=bad)
    with pytest.raises(ValueError, match=r"stop rules .* need stream_every=1"):
        PowerSMC(model, SMCConfig(), stop=make_stop_rule(["x"]), stream_every=4)
