"""The JSON codec: non-finite floats travel as strings and come back as floats."""

import json
import math

from powersmc_core.io.codec import from_json_safe, to_json_safe


def test_non_finite_floats_round_trip_through_strict_json():
    value = {"a": [1.0, float("nan"), (float("inf"), float("-inf"))], "b": "text", "c": 2}
    text = json.dumps(to_json_safe(value), allow_nan=False)
    assert json.loads(text) == {"a": [1.0, "nan", ["inf", "-inf"]], "b": "text", "c": 2}
    back = from_json_safe(json.loads(text)["a"])
    assert back[0] == 1.0 and math.isnan(back[1]) and back[2] == [math.inf, -math.inf]


def test_codec_leaves_its_input_and_ordinary_values_alone():
    value = [1.5, "x", None, True]
    assert to_json_safe(value) == value and from_json_safe(value) == value
    original = {"k": (float("nan"),)}
    to_json_safe(original)
    assert isinstance(original["k"], tuple) and math.isnan(original["k"][0])
