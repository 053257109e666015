"""Benchmark plumbing: EOS suppression is exact, the JSON is complete and its ratios add up.

Timings themselves are never asserted (the machine is shared and noisy); the real
numbers live in docs/bench.md.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from powersmc_core import PowerSMC, SMCConfig, ToyLM
from powersmc_core.bench import (
    METHODS,
    REQUIRED_KEYS,
    BenchSettings,
    Clock,
    SuppressEOS,
    Timed,
    decode_limit,
    format_table,
    make_methods,
    summarise,
    time_methods,
)
from powersmc_core.bench.backends import COMPARE_KEYS, COMPARED, summarise_comparison
from powersmc_core.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


# ---- EOS suppression ---------------------------------------------------------------------
def test_suppress_eos_renormalises_the_other_tokens_exactly():
    toy = ToyLM.random(vocab_size=5, max_len=4, seed=3)
    model = SuppressEOS(toy)
    eos = toy.eos_token_id
    for prefix in ([], [0], [1, 2]):
        raw = toy.next_token_logprobs(prefix)
        masked = model.next_token_logprobs(prefix)
        assert masked[eos] == -math.inf
        keep = torch.arange(toy.vocab_size) != eos
        expected = raw[keep] - torch.logsumexp(raw[keep], 0)  # p(v) / (1 - p(EOS))
        torch.testing.assert_close(masked[keep], expected, atol=1e-12, rtol=0)


def test_suppress_eos_in_start_and_advance_without_mutating_the_input():
    toy = ToyLM.random(vocab_size=4, max_len=5, seed=1)
    model = SuppressEOS(toy)
    _state, logp = toy.start([], 3)
    before = logp.clone()
    wrapped_state, masked = model.start([], 3)
    torch.testing.assert_close(logp, before)  # the backend's tensor is untouched
    assert torch.all(masked[:, toy.eos_token_id] == -math.inf)
    torch.testing.assert_close(torch.logsumexp(masked, -1), torch.zeros(3, dtype=masked.dtype))
    tokens = torch.tensor([0, 1, 2])
    _, advanced = model.advance(wrapped_state, tokens, torch.ones(3, dtype=torch.bool))
    assert torch.all(advanced[:, toy.eos_token_id] == -math.inf)
    assert model.token_names == toy.token_names  # other attributes pass through


def test_every_method_decodes_exactly_t_tokens_without_eos():
    toy = ToyLM.random(vocab_size=4, max_len=8, seed=0)
    model = SuppressEOS(toy)
    tokens = decode_limit(model, [], n_particles=5, max_new_tokens=7, seed=2).tokens
    assert tokens.shape == (5, 7)
    assert not torch.any(tokens == toy.eos_token_id)
    torch.testing.assert_close(
        tokens, decode_limit(model, [], n_particles=5, max_new_tokens=7, seed=2).tokens
    )
    result = PowerSMC(model, SMCConfig(n_particles=6, max_new_tokens=7), track_text=False).run([])
    assert result.n_steps == 7
    assert all(len(c) == 7 for c in result.completions)


@pytest.mark.parametrize("suppress", [False, True])
@pytest.mark.parametrize("alpha", [1.0, 4.0])
def test_limit_draws_exactly_the_tokens_smc_draws_without_resampling(suppress, alpha):
    # The floor is SMC's own draw: with kappa = 0 (no resampling draws) the same seed
    # gives the same tokens step by step, finished rows (-1) included, and the same forwards.
    toy = ToyLM.random(vocab_size=4, max_len=8, seed=1)
    model = SuppressEOS(toy) if suppress else toy
    n, t = 7, 7
    config = SMCConfig(alpha=alpha, n_particles=n, max_new_tokens=t, seed=3, ess_threshold=0.0)
    run = PowerSMC(model, config, track_text=False).stream([])
    records = list(run)
    smc_tokens = torch.tensor([r.tokens for r in records]).T  # (n, steps)
    limit = decode_limit(model, [], n_particles=n, max_new_tokens=t, seed=3, alpha=alpha)
    steps = smc_tokens.shape[1]  # SMC stops reading once every row finished
    torch.testing.assert_close(limit.tokens[:, :steps], smc_tokens)
    assert torch.all(limit.tokens[:, steps:] == -1)
    assert int(limit.forwards) == run.token_forwards
    if not suppress:  # the toy's EOS did finish rows: the finished-row handling was tested
        assert torch.any(smc_tokens == -1) and torch.any(smc_tokens != -1)
    other = decode_limit(model, [], n_particles=n, max_new_tokens=t, seed=4, alpha=alpha)
    assert not torch.equal(other.tokens, limit.tokens)  # the seed reaches the draw


def test_timed_clocks_only_model_calls():
    clock = Clock()
    model = Timed(ToyLM.trap(), clock)
    decode_limit(model, [], n_particles=2, max_new_tokens=2)
    assert clock.seconds > 0
    assert model.token_names == ToyLM.trap().token_names


# ---- arithmetic ----------------------------------------------------------------------------
def test_summary_medians_and_ratios():
    times = {
        "base": [1.0, 3.0, 2.0],
        "limit": [4.0, 5.0, 6.0],
        "smc": [5.0, 5.5, 7.0],
        "mh": [30.0, 10.0, 20.0],
    }
    inside = {"limit": [3.5, 4.5, 5.5], "smc": [4.0, 4.5, 6.0]}
    settings = BenchSettings(n_particles=8, max_new_tokens=10, repeats=3)
    s = summarise(times, settings, {"device": "cpu", "model": "m"}, inside)
    assert set(REQUIRED_KEYS) <= set(s)
    assert (s["base_s"], s["limit_s"], s["smc_s"], s["mh_s"]) == (2.0, 5.0, 5.5, 20.0)
    assert s["smc_over_limit"] == pytest.approx(5.5 / 5.0)
    assert s["smc_over_baseline"] == pytest.approx(5.5 / 2.0)
    assert s["mh_over_baseline"] == pytest.approx(20.0 / 2.0)
    assert s["mh_over_smc"] == pytest.approx(20.0 / 5.5)
    assert s["ms_per_step"] == pytest.approx(550.0)
    assert s["base_ms_per_step"] == pytest.approx(200.0) and "baseline_s" not in s
    # outside the model: limit 0.5 s, smc 1.0 s per run -> 50 and 100 ms per step
    assert s["outside_model_ms_per_step"] == pytest.approx({"limit": 50.0, "smc": 100.0})
    assert s["smc_bookkeeping_over_limit"] == pytest.approx(0.5 / 5.0)
    assert s["n_particles"] == 8 and s["new_tokens"] == 10 and s["repeats"] == 3
    json.dumps(s, allow_nan=False)


def test_bench_rows_use_the_registry_names():
    """Every timed row that is a sampling method is named as the registry names it;
    limit (bare batched sampling) is the bench's own row."""
    from powersmc_core.samplers import registry as methods

    assert set(METHODS) - {"limit"} <= set(methods.METHODS)
    assert "base_s" in REQUIRED_KEYS and "baseline_s" not in REQUIRED_KEYS


def test_time_methods_interleaves_and_repeats():
    calls = []
    methods = {name: (lambda t, seed, name=name: calls.append((name, t, seed))) for name in "abc"}
    settings = BenchSettings(max_new_tokens=9, repeats=3, seed=10)
    times, inside = time_methods(methods, settings, torch.device("cpu"))
    warmup, timed = calls[:3], calls[3:]
    assert warmup == [("a", 4, 10), ("b", 4, 10), ("c", 4, 10)]
    assert [c[0] for c in timed] == list("abc" + "bca" + "cab")  # order rotates
    assert all(t == 9 for _, t, _ in timed)
    assert sorted({seed for *_, seed in timed}) == [10, 11, 12]  # a fresh seed per repeat
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert inside == {}
    calls.clear()
    time_methods(
        methods, BenchSettings(max_new_tokens=9, repeats=1), torch.device("cpu"), warmup_tokens=9
    )
    assert calls[:3] == [("a", 9, 0), ("b", 9, 0), ("c", 9, 0)]  # full-length warm-up


@pytest.mark.parametrize(
    "kwargs", [{"n_particles": 0}, {"new_tokens": 0}, {"repeats": 0}, {"alpha": -1.0}]
)
def test_settings_reject_bad_values(kwargs):
    with pytest.raises(ValueError):
        BenchSettings(**kwargs)


# ---- end to end ----------------------------------------------------------------------------
def _bench(capsys, tmp_path, *argv: str) -> tuple[int, dict | None, str, str]:
    path = tmp_path / "bench.json"
    code = main(["bench", "--repeats", "1", "--quiet", "--json", str(path), *argv])
    out, err = capsys.readouterr()
    data = json.loads(path.read_text()) if path.exists() else None
    return code, data, out, err


def _check_summary(data: dict, n: int, t: int) -> None:
    assert set(REQUIRED_KEYS) <= set(data)
    assert (data["n_particles"], data["new_tokens"], data["repeats"]) == (n, t, 1)
    med = {m: statistics.median(v) for m, v in data["times_s"].items()}
    assert data["smc_over_limit"] == pytest.approx(med["smc"] / med["limit"])
    assert data["smc_over_baseline"] == pytest.approx(med["smc"] / med["base"])
    assert data["mh_over_baseline"] == pytest.approx(med["mh"] / med["base"])
    assert data["ms_per_step"] == pytest.approx(1000 * med["smc"] / t)
    assert all(v > 0 for v in med.values())


def test_bench_on_a_toy_model(capsys, tmp_path):
    code, data, out, err = _bench(
        capsys, tmp_path, "--model", "toy-random:4,8,0", "--particles", "4", "--new-tokens", "6"
    )
    assert code == 0, err
    _check_summary(data, 4, 6)
    assert data["device"] == "cpu" and data["model"].startswith("toy-random")
    assert set(data["outside_model_ms_per_step"]) == {"base", "limit", "smc", "mh"}
    for method in ("base", "limit", "smc", "mh", "smc_over_limit"):
        assert method in out  # the table


def test_bench_on_a_random_init_transformer(capsys, tmp_path):
    code, data, _, err = _bench(
        capsys,
        tmp_path,
        "--random-init",
        "tiny",
        "--particles",
        "2",
        "--new-tokens",
        "4",
        "--mh-steps",
        "1",
        "--threads",
        "1",
    )
    assert code == 0, err
    _check_summary(data, 2, 4)
    assert data["model"] == "random:tiny" and data["dtype"] == "float32"
    assert data["mh_block_size"] == 1 and data["torch_threads"] == 1
    # Hugging Face generate, side by side (transformers models only), N rows and one.
    med = {m: statistics.median(v) for m, v in data["times_s"].items()}
    assert data["generate_s"] == pytest.approx(med["generate"]) and med["generate1"] > 0
    assert data["generate_ms_per_step"] == pytest.approx(1000 * med["generate"] / 4)
    assert data["smc_over_generate"] == pytest.approx(med["smc"] / med["generate"])
    assert data["stream_every"] == 1  # CPU default: records every step
    assert torch.get_num_threads() >= 1  # restored afterwards (not asserted equal: shared box)


def test_bench_static_cache_path_runs_on_cpu(capsys, tmp_path):
    code, data, _, err = _bench(
        capsys,
        tmp_path,
        "--random-init",
        "tiny",
        "--particles",
        "2",
        "--new-tokens",
        "3",
        "--skip",
        "mh",
        "--static-cache",
        "on",
        "--no-warmup",
    )
    assert code == 0, err
    assert data["static_cache"] is True
    assert data["mh_s"] is None and data["mh_over_baseline"] is None
    assert "generate" in data["times_s"]  # with transformers' own static cache


def test_bench_stream_every_and_skip_generate(capsys, tmp_path):
    code, data, _, err = _bench(
        capsys,
        tmp_path,
        *("--random-init", "tiny", "--particles", "3", "--new-tokens", "6"),
        *("--skip", "mh", "--skip", "generate", "--stream-every", "4", "--no-warmup"),
        *("--smc-block-size", "3"),
    )
    assert code == 0, err
    assert data["stream_every"] == 4 and data["smc_s"] > 0 and data["smc_block_size"] == 3
    assert set(data["times_s"]) == {"base", "limit", "smc"}
    assert "generate_s" not in data and data["smc_over_generate"] is None


def test_bench_smc_variants_are_timed_side_by_side(capsys, tmp_path):
    code, data, out, err = _bench(
        capsys,
        tmp_path,
        *("--random-init", "tiny", "--particles", "3", "--new-tokens", "6", "--repeats", "2"),
        *("--skip", "mh", "--skip", "generate", "--no-warmup"),
        *("--smc-variant", "3:3", "--smc-variant", "1:6"),
    )
    assert code == 0, err
    assert set(data["times_s"]) == {"base", "limit", "smc", "smc_b3_k3", "smc_b1_k6"}
    variant = data["smc_variants"]["smc_b3_k3"]
    assert (variant["block_size"], variant["stream_every"]) == (3, 3)
    median = statistics.median(data["times_s"]["smc_b3_k3"])
    assert variant["s"] == pytest.approx(median)
    assert variant["ms_per_step"] == pytest.approx(1000 * median / 6)
    assert variant["over_smc"] == pytest.approx(median / data["smc_s"])
    assert variant["over_baseline"] == pytest.approx(median / data["base_s"])
    assert "smc_b1_k6" in out  # a row of the printed table
    long_row = dict(data, times_s={**data["times_s"], "smc_b16_k16": [0.5, 0.5]})
    table = format_table(long_row).splitlines()[1 : 2 + len(long_row["times_s"])]
    assert len({len(line) for line in table}) == 1, table  # columns stay aligned


def test_smc_variants_decode_what_their_settings_say():
    from powersmc_core.models.loading import random_init_model

    model = SuppressEOS(random_init_model("tiny", device="cpu"))
    settings = BenchSettings(n_particles=4, max_new_tokens=6, smc_variants=((1, 3), (3, 1)))
    methods = make_methods(model, [1, 2, 3], settings)
    main_row, batched, blocked = (methods[m](6, 5) for m in ("smc", "smc_b1_k3", "smc_b3_k1"))
    # Records do not depend on stream_every; the block size changes when resampling draws
    # are made (every block boundary), hence the random stream and the samples.
    assert batched.completions == main_row.completions and batched.log_z == main_row.log_z
    assert blocked.completions != main_row.completions


def test_generate_method_draws_exactly_t_tokens_without_eos():
    from powersmc_core.bench import generate_method
    from powersmc_core.models.loading import random_init_model

    model = random_init_model("tiny", device="cpu")
    prompt = [1, 2, 3]
    generate = generate_method(model, prompt, 3, static=False)
    out = generate(7, seed=0)
    assert tuple(out.shape) == (3, len(prompt) + 7)
    new = out[:, len(prompt) :]
    assert not torch.isin(new, torch.tensor(model.eos_token_ids)).any()
    assert torch.equal(generate(7, seed=0), out)  # seeded
    with pytest.raises(ValueError, match="transformers model"):
        generate_method(ToyLM.trap(), [], 2, static=False)


def test_bench_reference_module_is_called_with_matching_settings(capsys, tmp_path):
    module = tmp_path / "smc_power_sample_memopt.py"
    module.write_text(
        "from dataclasses import dataclass\n"
        "CALLS = []\n"
        "@dataclass\n"
        "class SMCSamplingConfig:\n"
        "    max_new_tokens: int = 3072\n"
        "    alpha: float = 2.0\n"
        "    n_particles: int = 32\n"
        "    ess_threshold: float = 0.5\n"
        "    temperature: float = 0.25\n"
        "    block_size: int = 128\n"
        "    alpha_ramp_tokens: int = 400\n"
        "    min_new_tokens: int = 100\n"
        "    top_k: int = 0\n"
        "    top_p: float = 0.9\n"
        "    stop_on_boxed: bool = True\n"
        "def smc_power_sample_memopt(model, tokenizer, input_ids, cfg):\n"
        "    assert input_ids.shape[0] == 1\n"
        "    open(__file__ + '.log', 'a').write(repr(cfg) + '\\n')\n"
    )
    code, data, _, err = _bench(
        capsys,
        tmp_path,
        "--random-init",
        "tiny",
        "--particles",
        "3",
        "--new-tokens",
        "5",
        "--skip",
        "mh",
        "--reference-module",
        str(module),
        "--no-warmup",
    )
    assert code == 0, err
    assert data["reference_s"] > 0
    assert data["reference_over_smc"] == pytest.approx(data["reference_s"] / data["smc_s"])
    logged = (tmp_path / "smc_power_sample_memopt.py.log").read_text()
    assert "max_new_tokens=5" in logged and "n_particles=3" in logged
    assert "temperature=0.25" in logged and "min_new_tokens=5" in logged
    assert "block_size=1" in logged
    assert "top_p=1.0" in logged and "stop_on_boxed=False" in logged


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--model", "toy-random:4,4,0", "--new-tokens", "5"], "--max-new-tokens <= 3"),
        (["--particles", "0"], "n_particles"),
        (["--static-cache", "on"], "transformers model"),
        (["--compile"], "static KV cache, which is auto, and cpu is not CUDA"),
        (["--compile", "--static-cache", "off"], "which is off: add --static-cache on"),
        (["--reference-module", "/no/such.py"], "--reference-module"),
        (["--threads", "0"], "--threads"),
        (["--threads", "1,0"], "--threads"),
        (["--particles", "2,4"], "need --compare-backends"),
        (["--particles", "2,x"], "comma-separated list"),
        (["--stream-every", "0"], "stream_every"),
        (["--smc-block-size", "0"], "smc_block_size"),
        (["--smc-variant", "1:1"], "already timed"),
        (["--smc-variant", "16"], "expected B:K"),
        (["--smc-variant", "0:2"], "must be >= 1"),
        (["--repeats", "0"], "repeats"),
    ],
)
def test_bench_bad_input_is_one_error_line(capsys, tmp_path, argv, needle):
    if "--model" not in argv:
        argv = ["--model", "toy-trap", "--new-tokens", "2", *argv]
    code, data, out, err = _bench(capsys, tmp_path, *argv)
    assert code == 2 and data is None and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err


@pytest.mark.slow
def test_gpu_checks_script_runs_end_to_end_on_cpu(tmp_path):
    """deploy/gpu_checks.sh is what a scarce GPU lease runs: keep it working, here on a CPU."""
    env = dict(
        os.environ,
        OUT=str(tmp_path),
        PY=sys.executable,
        DEVICE="cpu",
        DTYPE="float32",
        ARCH="tiny",
        PARTICLES="4",
        NEW_TOKENS="4",
        REPEATS="1",
    )
    done = subprocess.run(
        ["bash", str(ROOT / "deploy" / "gpu_checks.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    bench = json.loads((tmp_path / "bench-gpu.json").read_text())
    assert bench["compiled"] and bench["static_cache"] and bench["stream_every"] == 16
    assert bench["compile_graph_breaks"] == 0  # one graph per forward
    assert bench["n_particles"] == 4 and bench["new_tokens"] == 4 and bench["smc_s"] > 0
    assert set(bench["smc_variants"]) == {"smc_b16_k16", "smc_b1_k1"}
    reorder = json.loads((tmp_path / "reorder-gpu.json").read_text())
    assert reorder["hfmodel_uses"] == "per_layer" and reorder["pooled_ms"] > 0
    assert "skipped" in (tmp_path / "cuda-tests.txt").read_text()  # no CUDA here


def test_count_step_ops_fences_off_the_forward():
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "measurements" / "count_step_ops.py"), "--steps", "4"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),  # as on the GPU machine: not installed
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = done.stdout.splitlines()[0]
    ops = float(summary.split(": ")[1].split(" ops")[0])
    assert 20 < ops < 200, summary  # the sampler's ops (~110); with the forward ~280
    assert "aten::linear" not in done.stdout and "attention" not in done.stdout
    timing = done.stdout.splitlines()[-1]
    assert timing.startswith("host time outside the forward: ") and "over 4 steps" in timing
    outside_ms = float(timing.split(": ")[1].split(" ms")[0])
    records_ms = float(timing.split("flushes: ")[1].split(" ms")[0])
    forward_ms = float(timing.split("forward: ")[1].split(" ms")[0])
    assert 0 < records_ms < outside_ms and forward_ms > 0, timing


# ---- bench --compare-backends (issue 15) -------------------------------------------------
@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed (make fast): no second backend to compare",
)
def test_compare_backends_reports_both_backends_and_the_ratios(capsys, tmp_path):
    n, t = 2, 3
    code, data, out, err = _bench(
        capsys, tmp_path, "--compare-backends", "-n", str(n), "-t", str(t), "--threads", "1"
    )
    assert code == 0, err
    assert set(COMPARE_KEYS) <= set(data)
    assert (data["n_particles"], data["new_tokens"], data["repeats"]) == (n, t, 1)
    assert data["threads"] == {"torch": 1, "llamacpp": 1}
    assert set(data["times"]) == {f"{w}_{b}" for w in ("limit", "smc") for b in COMPARED}
    med = {name: statistics.median(v) for name, v in data["times"].items()}
    assert all(v > 0 for v in med.values())
    for backend in COMPARED:
        assert data["smc_ms"][backend] == pytest.approx(1000 * med[f"smc_{backend}"] / t)
        assert data["limit_ms"][backend] == pytest.approx(1000 * med[f"limit_{backend}"] / t)
    assert data["smc_speedup_llamacpp"] == pytest.approx(med["smc_torch"] / med["smc_llamacpp"])
    assert data["smc_over_limit_llamacpp"] == pytest.approx(
        med["smc_llamacpp"] / med["limit_llamacpp"]
    )
    assert data["smc_over_limit_torch"] == pytest.approx(med["smc_torch"] / med["limit_torch"])
    for needle in ("smc_speedup_llamacpp", "limit", "smc", "llamacpp", "torch"):
        assert needle in out  # the printed table


def test_compare_grid_runs_every_pair_in_one_table_and_calibrates(capsys, tmp_path, monkeypatch):
    # Every (N, threads) of the lists, one table line each, JSON "runs"; with --calibrate-backends
    # the SMC rows land in this machine's calibration, where auto reads them. The timing itself
    # is stubbed: only the grid plumbing is under test here.
    from powersmc_core.bench import backends as bench_backends
    from powersmc_core.models.backend_timings import load_calibration

    monkeypatch.setenv("POWERSMC_CACHE_DIR", str(tmp_path / "cache"))
    seen = []

    def fake(args, settings, log=None):
        n, k = settings.n_particles, args.threads
        seen.append((n, k, torch.get_num_threads()))
        times = {
            "limit_torch": [0.01 * n],
            "smc_torch": [0.012 * n],
            "limit_llamacpp": [0.005 * n * k],
            "smc_llamacpp": [0.003 * n * k],
        }
        meta = {"model": "smollm2", "threads": {"torch": k, "llamacpp": k}, "load_average": [0.0]}
        return summarise_comparison(times, settings, meta)

    monkeypatch.setattr(bench_backends, "compare_backends", fake)
    code, data, out, err = _bench(
        capsys, tmp_path, "--model", "smollm2", "--calibrate-backends", "--particles", "8,32",
        "--threads", "1,2", "-t", "4",
    )  # fmt: skip
    assert code == 0, err
    assert seen == [(8, 1, 1), (32, 1, 1), (8, 2, 2), (32, 2, 2)]  # torch threads set per pair
    assert data["grid"] == {"n_particles": [8, 32], "threads": [1, 2]}
    assert [(r["n_particles"], r["threads"]["llamacpp"]) for r in data["runs"]] == [
        (8, 1), (32, 1), (8, 2), (32, 2)
    ]  # fmt: skip
    rows = [line for line in out.splitlines() if line.lstrip()[:1].isdigit()]
    assert len(rows) == 4 and "smc_speedup_llamacpp" in out
    assert rows[3].split()[:2] == ["32", "2"]
    table = load_calibration("smollm2")
    assert table is not None and len(table.rows) == 4
    last = table.rows[3]  # smc ms/step = 1000 · s / T
    assert (last.n_particles, last.threads) == (32, 2)
    assert (last.torch_ms, last.llamacpp_ms) == pytest.approx((96.0, 48.0))


def test_compare_summary_ratios_from_given_times():
    settings = BenchSettings(n_particles=2, max_new_tokens=4, repeats=3)
    times = {
        "limit_torch": [4.0, 2.0, 3.0],
        "smc_torch": [3.2, 3.0, 9.0],
        "limit_llamacpp": [1.0, 1.0, 1.5],
        "smc_llamacpp": [1.2, 1.1, 1.0],
    }
    summary = summarise_comparison(times, settings, {"threads": {}, "model": "m"})
    assert summary["smc_speedup_llamacpp"] == pytest.approx(3.2 / 1.1)
    assert summary["smc_over_limit_llamacpp"] == pytest.approx(1.1 / 1.0)
    assert summary["smc_over_limit_torch"] == pytest.approx(3.2 / 3.0)
    assert summary["smc_ms"] == pytest.approx({"torch": 800.0, "llamacpp": 275.0})
    assert summary["limit_ms"] == pytest.approx({"torch": 750.0, "llamacpp": 250.0})


@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed (make fast): no second backend to compare",
)
def test_lookahead_cost_times_both_samplers_on_both_backends(capsys, tmp_path):
    # Look-ahead's overhead: ms per token of smc and lookahead per backend, their ratio, and
    # forwards per token (rollouts included: N·K + N·K·M·(H - 1) per boundary on top of N).
    n, t = 2, 3
    code, data, out, err = _bench(
        capsys, tmp_path, "--lookahead-cost", "-n", str(n), "-t", str(t), "--threads", "1",
        "--rollout-k", "2", "--rollout-m", "2", "--rollout-h", "2", "--no-warmup",
    )  # fmt: skip
    assert code == 0, err
    assert data["lookahead_kmh"] == [2, 2, 2]
    med = {name: statistics.median(v) for name, v in data["times"].items()}
    assert set(med) == {f"{m}_{b}" for m in ("smc", "lookahead") for b in COMPARED}
    for backend in COMPARED:
        ratio = med[f"lookahead_{backend}"] / med[f"smc_{backend}"]
        assert data["lookahead_over_smc"][backend] == pytest.approx(ratio)
        assert data["ms_per_token"][f"smc_{backend}"] == pytest.approx(
            1000 * med[f"smc_{backend}"] / t
        )
        smc_fwd = data["forwards_per_token"][f"smc_{backend}"]
        la_fwd = data["forwards_per_token"][f"lookahead_{backend}"]
        assert smc_fwd * t == pytest.approx(n * t, abs=n)  # N rows a step (+ the prompt's)
        assert la_fwd > smc_fwd  # the rollouts are counted
    fwd = data["forwards_per_token"]
    assert fwd["lookahead_torch"] == fwd["lookahead_llamacpp"]  # same rows on both backends
    assert "la/smc" in out and "llamacpp" in out
