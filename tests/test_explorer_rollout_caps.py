"""The gate bounds the rollout methods' knobs: K, M, H and ε per field, and one boundary's
rollout forwards N·K·M·H under ``max_rollout_forwards`` (toy models, no run started)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from explorer import inputs
from explorer.gate import Gate, InputError
from explorer.limits import RunLimiter
from explorer.settings import demo_settings
from powersmc_core.models.loading import load_model

DEMO = demo_settings({"POWERSMC_DEMO": "1"})
FULL = demo_settings({})


def gate(settings=DEMO) -> Gate:
    return Gate(settings, limiter=RunLimiter(max_concurrent=1, max_queue=1), visitor="v1")


@pytest.fixture(scope="module")
def trap():
    return load_model("toy-trap")


def test_the_bounds_table_holds_the_rollout_knobs_within_the_library_range():
    bounds = inputs.field_bounds(DEMO)
    assert bounds["rollout_k"] == (1, 64) and bounds["rollout_m"] == (1, 256)
    assert bounds["rollout_h"] == (1, 64) and bounds["lookahead_epsilon"] == (0.0, 0.99)
    assert DEMO.max_rollout_forwards == 16_384 < FULL.max_rollout_forwards


def test_a_depth_over_the_token_cap_is_clamped_with_the_gate_wording(trap):
    # A rollout deeper than the run's length cap sees nothing more: H <= max new tokens.
    short = replace(FULL, max_new_tokens=16)
    admitted = gate(short).compare(
        trap, "toy-trap", {"n_particles": 2, "rollout_h": 32}, [], ["lookahead"], 1, "EOS only"
    )
    assert admitted.config.rollout_h == 16
    assert "H depth must be in [1, 16]; got 32; using 16" in admitted.notes


def test_rollout_forwards_over_the_demo_cap_lower_m_first_with_a_note(trap):
    # N·K·M·H = 32·8·64·4 = 65,536 > 16,384: M drops to 16,384 // (32·8·4) = 16.
    admitted = gate().live(
        trap,
        "toy-trap",
        {"n_particles": 32, "rollout_k": 8, "rollout_m": 64, "rollout_h": 4},
        [],
        "(empty)",
        "EOS only",
        method="lookahead",
    )
    c = admitted.config
    assert (c.rollout_k, c.rollout_m, c.rollout_h) == (8, 16, 4)
    assert c.n_particles * c.rollout_k * c.rollout_m * c.rollout_h <= DEMO.max_rollout_forwards
    assert admitted.notes == (
        "M rollouts (N·K·M·H <= 16,384 rollout forwards) must be in [1, 16]; got 64; using 16",
    )
    assert admitted.live is not None and admitted.live.method == "lookahead"


def test_the_method_defaults_count_toward_the_cap(trap):
    # rollout's defaults K = M = H = 8 at N = 32 fit the demo cap exactly; H = 64 needs M = 1.
    ok = gate().compare(trap, "toy-trap", {"n_particles": 32}, [], ["rollout"], 1, "EOS only")
    assert ok.notes == () and ok.config.rollout_m is None
    over = gate().compare(
        trap, "toy-trap", {"n_particles": 32, "rollout_h": 64}, [], ["rollout"], 1, "EOS only"
    )
    assert (over.config.rollout_m, over.config.rollout_h) == (1, 64)


def test_when_m_1_is_not_enough_h_is_lowered_next(trap):
    # 32·64·M·64 > 16,384 even at M = 1: then H = 16,384 // (32·64·1) = 8.
    requested = {"n_particles": 32, "rollout_k": 64, "rollout_m": 8, "rollout_h": 64}
    c = gate().compare(trap, "toy-trap", requested, [], ["lookahead"], 1, "EOS only").config
    assert (c.rollout_k, c.rollout_m, c.rollout_h) == (64, 1, 8)


def test_methods_without_rollouts_are_not_capped(trap):
    admitted = gate().compare(
        trap, "toy-trap", {"n_particles": 32, "rollout_m": 256}, [], ["smc"], 1, "EOS only"
    )
    assert admitted.config.rollout_m == 256 and admitted.notes == ()


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ({"rollout_k": 0}, r"K candidates must be in \[1, 64\]; got 0"),
        ({"rollout_k": 100}, r"K candidates must be in \[1, 64\]; got 100"),
        ({"rollout_m": -3}, r"M rollouts must be in \[1, 256\]; got -3"),
        ({"lookahead_epsilon": 1.0}, r"look-ahead ε must be in \[0, 0\.99\]; got 1"),
    ],
)
def test_values_no_cap_can_fix_are_refused(trap, requested, message):
    with pytest.raises(InputError, match=message):
        gate().live(trap, "toy-trap", requested, [], "(empty)", "EOS only", method="lookahead")


def test_live_refuses_a_method_it_cannot_run(trap):
    with pytest.raises(InputError, match="Live SMC runs one of"):
        gate().live(trap, "toy-trap", {}, [], "(empty)", "EOS only", method="mh")
