"""The bench reports token forwards per token beside ms per token (toy models)."""

from __future__ import annotations

import json

import pytest

from powersmc_core.bench import BenchSettings
from powersmc_core.bench.summary import format_table, summarise
from powersmc_core.cli.main import main


def test_summary_divides_each_rows_forwards_by_the_tokens():
    times = {"base": [1.0], "limit": [1.0], "smc": [2.0], "mh": [5.0]}
    settings = BenchSettings(n_particles=4, max_new_tokens=10, repeats=1)
    s = summarise(times, settings, {"device": "cpu", "model": "m"}, None, {"smc": 41, "base": 11})
    assert s["token_forwards"] == {"smc": 41, "base": 11}
    assert s["forwards_per_token"] == pytest.approx({"smc": 4.1, "base": 1.1})
    table = format_table(s)
    assert "fwd/tok" in table
    (smc_line,) = [line for line in table.splitlines() if line.startswith("smc ")]
    assert "4.1" in smc_line.split()
    (limit_line,) = [line for line in table.splitlines() if line.startswith("limit ")]
    assert len(limit_line.split()) == len(smc_line.split()) - 1  # limit counts none
    assert summarise(times, settings, {"device": "cpu", "model": "m"})["token_forwards"] is None


def test_the_bench_counts_each_samplers_forwards_on_a_toy(capsys, tmp_path):
    path = tmp_path / "bench.json"
    argv = ["--model", "toy-random:4,8,0", "--particles", "4", "--new-tokens", "6"]
    code = main(["bench", "--repeats", "1", "--quiet", "--json", str(path), *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(path.read_text())
    per_token = data["forwards_per_token"]
    assert {"base", "smc", "mh"} <= set(per_token) and "limit" not in per_token
    # Power-SMC forwards its N = 4 rows every token (EOS suppressed, none finish early);
    # one base sample forwards one row.
    assert 4 <= per_token["smc"] <= 4 + 1 and 1 <= per_token["base"] <= 2
    assert per_token["smc"] == data["token_forwards"]["smc"] / 6
    assert "fwd/tok" in out
