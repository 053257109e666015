import json

import pytest

from powersmc_core import PowerSMC, SMCConfig, ToyLM
from powersmc_core.engine.stopping import BoxedAnswer, StopStrings, make_stop_rule
from powersmc_core.engine.text import ParticleTexts
from powersmc_core.io.trace import MAX_TRACE_BYTES, TraceError, dumps_trace, read_trace, write_trace


def feed(rule, pieces_per_step, n=1):
    rule.reset(n)
    return [rule.update([p])[0] for p in pieces_per_step]


def test_stop_strings_straddling_pieces():
    assert feed(StopStrings(["\n\n"]), ["a\n", "\nb"]) == [False, True]
    assert feed(StopStrings(["STOP"]), ["xx S", "T", "OP"]) == [False, False, True]
    assert feed(StopStrings(["STOP"]), ["ST", "xOP"]) == [False, False]
    with pytest.raises(ValueError, match="non-empty"):
        StopStrings([""])


@pytest.mark.parametrize(
    ("pieces", "stops_at"),
    [
        (["The answer is \\box", "ed{4", "2}", " more"], 2),
        (["\\boxed{\\frac{1}", "{2}", "}"], 2),
        (["\\boxed{}", " then \\boxed{ 7 }"], 1),
        (["\\boxed{ ", " }"], None),
        (["no box here }"], None),
        (["\\boxed{3}"], 0),
    ],
)
def test_boxed_answer_rule(pieces, stops_at):
    hits = feed(BoxedAnswer(), pieces)
    assert hits.index(True) == stops_at if stops_at is not None else not any(hits)


def test_rules_follow_resampling():
    rule = make_stop_rule(["END"], boxed=True)
    rule.reset(2)
    assert rule.update(["E", "\\boxed{1"]) == [False, False]
    rule.reorder([1, 1])
    assert rule.update(["ND", "}"]) == [False, True]
    assert make_stop_rule([], boxed=False) is None


def test_incremental_text_equals_full_decode():
    model = ToyLM.random(5, 7, seed=0)
    texts = ParticleTexts(model.decode_batch, 2)
    seqs = [[0, 1, 2], [3, 3, 0]]
    for step in range(3):
        texts.push([seqs[0][step], seqs[1][step]], [True, step < 2])
    assert texts.texts == [model.decode_batch([seqs[0]])[0], model.decode_batch([[3, 3]])[0]]
    texts.reorder([1, 1])
    assert texts.texts[0] == texts.texts[1] == "d d"


def test_incremental_text_holds_back_incomplete_utf8():
    pieces = {(1,): "\ufffd", (1, 2): "é", (1, 2, 3): "é!"}

    def decode(seqs):
        return [pieces.get(tuple(s), "") if s else "" for s in seqs]

    texts = ParticleTexts(decode, 1)
    assert texts.push([1], [True]) == [""]
    assert texts.push([2], [True]) == ["é"]
    assert texts.push([3], [True]) == ["!"]
    assert texts.texts == ["é!"]


def test_stop_rule_finishes_particles_in_the_sampler():
    model = ToyLM.random(5, 7, seed=1, sharpness=0.3)
    rule = StopStrings(["b"])  # token "b" renders as "b"
    run = PowerSMC(model, SMCConfig(n_particles=16, seed=0, max_new_tokens=6), stop=rule).stream([])
    list(run)
    result = run.result()
    for text, done, completion in zip(
        result.texts, result.finished, result.completions, strict=True
    ):
        if "b" in text:
            assert done and completion[-1] == 1  # stopped right at the token that completed "b"
    assert any("b" in t for t in result.texts)


def trace_text(**kwargs):
    model = ToyLM.random(5, 6, seed=3, sharpness=0.7)
    sampler = PowerSMC(
        model, SMCConfig(alpha=4.0, n_particles=8, seed=0, ess_threshold=0.9, **kwargs)
    )
    run = sampler.stream([])
    records = list(run)
    return records, dumps_trace(records, sampler.config, {"model": model.name}, run.result())


def test_trace_round_trip(tmp_path):
    records, text = trace_text()
    path = write_trace(tmp_path / "run.jsonl", records, SMCConfig(n_particles=8), {"model": "m"})
    trace = read_trace(path)
    assert len(trace.records) == len(records)
    assert [r.tokens for r in trace.records] == [r.tokens for r in records]
    assert [r.ancestors for r in trace.records] == [r.ancestors for r in records]
    assert trace.config["n_particles"] == 8
    full = read_trace(text.encode())
    assert full.result is not None and full.header["model"] == "toy-random(V=5,L=6,seed=3)"
    assert all(
        json.loads(line)["kind"] in {"header", "step", "result"} for line in text.splitlines()
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda lines: [], "empty"),
        (lambda lines: ["{not json", *lines[1:]], "line 1: not valid JSON"),
        (lambda lines: lines[1:], "missing header"),
        (lambda lines: [lines[0]], "no step records"),
        (lambda lines: [lines[0], lines[2], lines[1]], "follows step"),
        (lambda lines: [lines[0], lines[1].replace('"ess"', '"ESS"')], "missing fields"),
        (
            lambda lines: [lines[0], lines[1].replace('"ancestors": [0', '"ancestors": [99')],
            "out of range",
        ),
        (lambda lines: [lines[0], '["a list"]'], "expected a JSON object"),
        (
            lambda lines: [lines[0].replace('"version": 1', '"version": 7'), *lines[1:]],
            "unsupported",
        ),
    ],
)
def test_corrupt_traces_are_rejected_with_a_line_number(mutate, message):
    _, text = trace_text()
    bad = "\n".join(mutate(text.splitlines()))
    with pytest.raises(TraceError, match=message):
        read_trace(bad.encode())


def test_trace_size_limit_and_binary():
    with pytest.raises(TraceError, match="limit"):
        read_trace(b"x" * 101, max_bytes=100)
    with pytest.raises(TraceError, match="UTF-8"):
        read_trace(b"\xff\xfe\x00")
    assert MAX_TRACE_BYTES >= 10 * 1024 * 1024


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda line: line.replace('"step": 1', '"step": "x"'), "'step' must be an integer"),
        (lambda line: line.replace('"ess": ', '"ess": "zz", "_": '), "'ess' must be a number"),
        (lambda line: line.replace('"ancestors": [0', '"ancestors": ["a"'), "wrong type"),
        (lambda line: line.replace('"resampled": false', '"resampled": 0'), "true or false"),
        (lambda line: line.replace('"log_weights": [', '"log_weights": ["w", '), "wrong type"),
        (lambda line: line.replace('"step": 1', '"step": ' + "9" * 5000), "absurdly"),
        (lambda line: "[" * 100_000 + "]" * 100_000, "absurdly"),
    ],
)
def test_hostile_step_lines_are_trace_errors_not_crashes(mutate, message):
    _, text = trace_text()
    lines = text.splitlines()
    with pytest.raises(TraceError, match=message):
        read_trace("\n".join([lines[0], mutate(lines[1]), *lines[2:]]).encode())


def _with_step(text: str, index: int, **changes) -> bytes:
    lines = text.splitlines()
    step = json.loads(lines[index])
    step.update(changes)
    lines[index] = json.dumps(step)
    return "\n".join(lines).encode()


def test_trace_limits_bound_particles_steps_cells_and_texts():
    from powersmc_core.io.trace import TraceLimits

    records, text = trace_text()
    n, steps = records[0].n_particles, len(records)
    read_trace(text.encode(), limits=TraceLimits(max_particles=n, max_steps=steps))  # at the caps
    for limits, message in [
        (TraceLimits(max_particles=n - 1), f"{n} particles; the limit is {n - 1}"),
        (TraceLimits(max_steps=steps - 1), "steps"),
        (TraceLimits(max_cells=n * steps - 1), "cells"),
        (TraceLimits(max_text_chars=0), "longer than 0 characters"),
    ]:
        with pytest.raises(TraceError, match=message):
            read_trace(text.encode(), limits=limits)


def test_trace_with_an_unnormalised_weight_is_refused():
    """log W = 800 (a hostile upload) used to overflow the app's particle table."""
    records, text = trace_text()
    log_w = list(records[0].log_weights)
    log_w[0] = 800.0
    with pytest.raises(TraceError, match=r"line 2: log_weights must be normalised"):
        read_trace(_with_step(text, 1, log_weights=log_w))
    log_w[0] = "nan"
    with pytest.raises(TraceError, match="finite or -inf"):
        read_trace(_with_step(text, 1, log_weights=log_w))
