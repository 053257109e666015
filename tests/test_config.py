import math

import pytest

from powersmc_core import SMCConfig

BAD = [
    ("alpha", 0.0, "alpha"),
    ("alpha", -1.0, "alpha"),
    ("alpha", math.nan, "alpha"),
    ("alpha", math.inf, "alpha"),
    ("alpha", "four", "alpha"),
    ("n_particles", 0, "n_particles"),
    ("n_particles", 2.5, "n_particles"),
    ("n_particles", True, "n_particles"),
    ("ess_threshold", 1.5, "ess_threshold"),
    ("ess_threshold", -0.1, "ess_threshold"),
    ("resampling", "bogus", "resampling"),
    ("schedule", "cosine", "schedule"),
    ("alpha_start", 0.0, "alpha_start"),
    ("ramp_tokens", 0, "ramp_tokens"),
    ("target_ess", 0.0, "target_ess"),
    ("target_ess", 1.2, "target_ess"),
    ("proposal_temperature", 0.0, "proposal_temperature"),
    ("proposal_temperature", math.nan, "proposal_temperature"),
    ("block_size", 0, "block_size"),
    ("max_new_tokens", 0, "max_new_tokens"),
    ("seed", -1, "seed"),
]


@pytest.mark.parametrize(("field", "value", "named"), BAD)
def test_invalid_field_raises_value_error_naming_it(field, value, named):
    with pytest.raises(ValueError, match=named):
        SMCConfig(**{field: value})


def test_unknown_resampling_lists_the_valid_schemes():
    with pytest.raises(ValueError, match="systematic"):
        SMCConfig(resampling="nope")


def test_defaults_follow_the_paper():
    config = SMCConfig()
    assert config.ess_threshold == 0.5
    assert config.resampling == "systematic"
    assert config.schedule == "constant"
    assert config.alpha_start == 1.0
    assert config.proposal_temperature is None
    assert config.block_size == 1


def test_round_trip_and_unknown_keys():
    config = SMCConfig(alpha=2, n_particles=3, proposal_temperature=0.7)
    assert isinstance(config.alpha, float)
    assert SMCConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown SMCConfig fields"):
        SMCConfig.from_dict({"alpha": 2.0, "particles": 4})


# ---- the fields describe themselves (flags, help, bounds) ---------------------------------
def _inside_and_outside(knob):
    """(values the bounds allow, values just past them) for one field's Knob."""
    inside, outside = [], []
    step = 1 if knob.kind == "int" else 1e-9
    if knob.low is not None:
        if knob.low_open:
            inside.append(knob.low + (1 if knob.kind == "int" else 1e-6))
            outside.append(knob.low)
        else:
            inside.append(knob.low)
            outside.append(knob.low - step)
    if knob.high is not None:
        inside.append(knob.high)
        outside.append(knob.high + (1 if knob.kind == "int" else 1e-6))
    for choice in knob.choices:
        inside.append(choice)
    if knob.choices:
        outside.append("no-such-" + knob.choices[0])
    return inside, outside


def test_every_field_has_a_knob_and_its_bounds_are_the_enforced_ones():
    from dataclasses import fields

    from powersmc_core.engine.config import config_field_bounds, config_knobs

    knobs = config_knobs()
    assert list(knobs) == [f.name for f in fields(SMCConfig)]
    assert set(config_field_bounds()) == set(knobs)
    for name, knob in knobs.items():
        assert knob.flag.startswith("--") and knob.help, name
        inside, outside = _inside_and_outside(knob)
        assert inside and outside, f"{name}: a knob without bounds cannot be checked"
        for value in inside:
            SMCConfig(**{name: value})  # accepted
        for value in outside:
            with pytest.raises(ValueError, match=name):
                SMCConfig(**{name: value})
        if knob.optional:
            assert getattr(SMCConfig(**{name: None}), name) is None
