"""Hostile and malformed trace uploads: every one ends in ``TraceError`` with a message,
never another exception — including the cases ``trace.read_trace`` alone lets through
(wrong value types, deep nesting, huge integers) — and a valid trace still loads."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.settings import demo_settings
from explorer.uploads import read_trace_safely, read_upload
from powersmc_core import PowerSMC, SMCConfig, ToyLM
from powersmc_core.engine.records import PER_PARTICLE_FIELDS
from powersmc_core.io.trace import TraceError, dumps_trace

DEMO = demo_settings({"POWERSMC_DEMO": "1"})


def valid_trace() -> str:
    config = SMCConfig(n_particles=4, seed=1)
    run = PowerSMC(ToyLM.trap(), config).stream([])
    records = list(run)
    return dumps_trace(
        records, config, meta={"model": "toy-trap", "prompt": ""}, result=run.result()
    )


VALID = valid_trace()
HEADER, STEP, *REST = VALID.splitlines()


def with_step(**changes) -> bytes:
    step = json.loads(STEP)
    step.update(changes)
    return "\n".join([HEADER, json.dumps(step)]).encode()


def with_header(**changes) -> bytes:
    header = json.loads(HEADER)
    header.update(changes)
    return "\n".join([json.dumps(header), STEP]).encode()


def with_result(**changes) -> bytes:
    result = json.loads(REST[-1])
    result.update(changes)
    return "\n".join([HEADER, STEP, *REST[:-1], json.dumps(result)]).encode()


def test_valid_trace_loads():
    trace = read_upload(VALID.encode(), DEMO)
    assert trace.records and trace.result is not None and trace.meta["notes"] == []
    assert read_upload(b"\xef\xbb\xbf" + VALID.encode(), DEMO).records  # BOM from an editor


N = len(json.loads(STEP)["tokens"])
BAD = {
    "deep nesting": (HEADER + "\n" + "[" * 100_000 + "]" * 100_000).encode(),
    "huge integer": (HEADER + "\n" + STEP.replace('"step": 1', '"step": ' + "9" * 5000)).encode(),
    "not utf-8": b"\xff\xfe\x00garbage",
    "binary": bytes(range(256)) * 10,
    "empty": b"",
    "only whitespace": b"\n\n  \n",
    "json but not a trace": b'{"hello": "world"}',
    "header only": HEADER.encode(),
    "array line": (HEADER + "\n[1, 2, 3]").encode(),
    "ancestors not ints": with_step(ancestors=["a"] * N),
    "ancestors floats": with_step(ancestors=[0.5] * N),
    "ancestor out of range": with_step(ancestors=[N] * N),
    "step is text": with_step(step="x"),
    "step is zero": with_step(step=0),
    "ess is text": with_step(ess="zz"),
    "weights are text": with_step(log_weights=["a"] * N),
    "weights NaN": with_step(log_weights=["nan"] * N),
    "tokens nested": with_step(tokens=[[1]] * N),
    "finished not bools": with_step(finished=[1] * N),
    "resampled not bool": with_step(resampled="yes"),
    "texts wrong length": with_step(texts=["a"]),
    "texts not a list": with_step(texts=5),
    "missing field": with_step(log_p=None),
    "no particles": with_step(**{k: [] for k in PER_PARTICLE_FIELDS}),
    "config not an object": with_header(config=5),
    "config NaN alpha": with_header(config={**SMCConfig().to_dict(), "alpha": "nan"}),
    "config unknown field": with_header(config={"alpha": 2.0, "evil": 1}),
    "config negative N": with_header(config={"n_particles": -3}),
    "wrong version": with_header(version=99),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_trace_is_a_trace_error(name):
    with pytest.raises(TraceError) as info:
        read_upload(BAD[name], DEMO)
    assert str(info.value) and len(str(info.value)) < 400


def test_huge_upload_is_refused_before_parsing():
    big = b"x" * (DEMO.max_upload_bytes + 1)
    with pytest.raises(TraceError, match="upload limit"):
        read_upload(big, DEMO)

    class Uploaded:  # Streamlit's UploadedFile: size known before reading
        size = 10**9

        def getvalue(self) -> bytes:
            raise AssertionError("must not read a file that is over the limit")

    with pytest.raises(TraceError, match="upload limit"):
        read_upload(Uploaded(), DEMO)
    with pytest.raises(TraceError):
        read_upload(None, DEMO)
    with pytest.raises(TraceError):
        read_upload("a string", DEMO)


@pytest.mark.parametrize(
    "changes",
    [{"chosen": 99}, {"chosen": "0"}, {"weights": [1.0]}, {"completions": "x"}, {"texts": [1, 2]}],
)
def test_bad_result_line_is_dropped_with_a_note(changes):
    trace = read_upload(with_result(**changes), DEMO)
    assert trace.result is None and "result line ignored" in trace.meta["notes"][0]


def test_long_header_strings_are_cut():
    trace = read_upload(with_header(prompt="p" * 100_000, model=["not", "a", "string"]), DEMO)
    assert len(trace.header["prompt"]) <= 2000 and isinstance(trace.header["model"], str)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_corruption_never_escapes_as_another_exception(data):
    raw = bytearray(VALID.encode())
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        pos = data.draw(st.integers(0, len(raw) - 1))
        if kind == "flip":
            raw[pos] = data.draw(st.integers(0, 255))
        elif kind == "delete":
            del raw[pos : pos + data.draw(st.integers(1, 50))]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=20))
        if not raw:
            break
    # Any exception other than TraceError fails the test.
    with contextlib.suppress(TraceError):
        read_trace_safely(bytes(raw), max_bytes=10**7)
