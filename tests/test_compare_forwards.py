"""Compare counts compute: each method's token forwards (the registry's accounting) and
their ratio to Power-SMC's, beside the latency (toy models)."""

from __future__ import annotations

import math

import pytest

from explorer import comparison
from powersmc_core.engine.config import SMCConfig
from powersmc_core.models.loading import load_model
from powersmc_core.samplers.registry import token_forwards


@pytest.fixture(scope="module")
def trap():
    return load_model("toy-trap")


def test_the_table_shows_each_methods_forwards_and_its_ratio_to_power_smc(trap):
    config = SMCConfig(n_particles=4, max_new_tokens=4, rollout_m=2, rollout_h=2)
    runs = list(comparison.compare_runs(trap, [], ["base", "smc", "lookahead"], config, 1))
    frame = comparison.comparison_frame(runs, trap).set_index("key")
    counted = {d.method: token_forwards(d.result) for d in runs}
    for method, forwards in counted.items():
        assert frame.loc[method, "token forwards"] == forwards
        assert frame.loc[method, "× Power-SMC forwards"] == pytest.approx(forwards / counted["smc"])
    # Look-ahead's rollouts cost more than Power-SMC's N forwards per token.
    assert frame.loc["lookahead", "× Power-SMC forwards"] > 1.5
    table = comparison.comparison_table(frame.reset_index())
    assert list(table["token forwards"]) == list(frame["token forwards"])
    assert "× Power-SMC forwards" in table


def test_without_power_smc_the_ratio_is_not_a_number(trap):
    runs = list(comparison.compare_runs(trap, [], ["base"], SMCConfig(max_new_tokens=3), 1))
    frame = comparison.comparison_frame(runs, trap)
    assert frame["token forwards"].iloc[0] > 0
    assert math.isnan(frame["× Power-SMC forwards"].iloc[0])


def test_the_rollout_knobs_reach_the_sampler_through_compare(trap):
    def forwards(**knobs):
        config = SMCConfig(n_particles=4, max_new_tokens=4, **knobs)
        (done,) = comparison.compare_runs(trap, [], ["lookahead"], config, 1)
        return token_forwards(done.result)

    assert forwards(rollout_m=1, rollout_h=1) < forwards(rollout_m=4, rollout_h=3)
