"""The rollout knobs (K, M, H, ε) from the command line and the evaluation reach the
sampler, are recorded in the trace header, and are refused out of range (toy models)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from powersmc_core.cli.main import main
from powersmc_core.evaluation.problem_run import EvalSettings, config_hash
from powersmc_core.io.trace import read_trace


def run(capsys, tmp_path, method: str, *flags: str) -> dict:
    path = tmp_path / f"{method}{'_'.join(flags)}.json"
    argv = ["run", "--model", "toy-trap", "--method", method, "--particles", "4"]
    code = main([*argv, "--max-new-tokens", "4", *flags, "--json", str(path), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(path.read_text())


@pytest.mark.parametrize("method", ["lookahead", "rollout"])
def test_more_candidates_rollouts_or_depth_cost_more_forwards(capsys, tmp_path, method):
    small = run(
        capsys, tmp_path, method, "--rollout-k", "1", "--rollout-m", "2", "--rollout-h", "1"
    )
    big = run(capsys, tmp_path, method, "--rollout-k", "3", "--rollout-m", "2", "--rollout-h", "1")
    deep = run(capsys, tmp_path, method, "--rollout-k", "3", "--rollout-m", "2", "--rollout-h", "3")
    forwards = [d["extras"]["token_forwards"] for d in (small, big, deep)]
    assert forwards[0] < forwards[1] < forwards[2], forwards
    assert (big["config"]["rollout_k"], big["config"]["rollout_m"]) == (3, 2)


def test_the_knobs_are_in_the_trace_header(capsys, tmp_path):
    trace_path = tmp_path / "t.jsonl"
    flags = ("--rollout-k", "2", "--rollout-m", "3", "--lookahead-epsilon", "0.25")
    data = run(capsys, tmp_path, "lookahead", *flags, "--trace", str(trace_path))
    header = read_trace(trace_path).config
    assert (header["rollout_k"], header["rollout_m"], header["rollout_h"]) == (2, 3, None)
    assert header["lookahead_epsilon"] == 0.25 == data["config"]["lookahead_epsilon"]


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--rollout-k", "0", "rollout_k must be in [1, 64]; got 0"),
        ("--rollout-m", "300", "rollout_m must be in [1, 256]; got 300"),
        ("--lookahead-epsilon", "1", "lookahead_epsilon must be in [0, 0.99]; got 1"),
    ],
)
def test_out_of_range_knobs_are_one_error_line(capsys, flag, value, needle):
    argv = ["run", "--model", "toy-trap", "--method", "lookahead", flag, value, "--quiet"]
    assert main(argv) != 0
    _, err = capsys.readouterr()
    assert needle in err


def test_eval_flags_reach_the_rows_and_keep_old_hashes_while_unset(capsys, tmp_path):
    out = tmp_path / "rows.csv"
    argv = ["eval", "--task", "toy", "--n", "1", "--model", "toy-trap", "--methods", "lookahead"]
    flags = ["--n-particles", "2", "--max-new-tokens", "4", "--rollout-m", "2", "--rollout-h", "1"]
    code = main([*argv, *flags, "--out", str(out), "--no-plots", "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 0, err
    (row,) = pd.read_csv(out).to_dict("records")
    config = json.loads(row["config"])
    assert (config["rollout_m"], config["rollout_h"], config["rollout_k"]) == (2, 1, None)
    # Unset, the new settings leave a method's hash as it was before they existed.
    plain, knob = EvalSettings(), EvalSettings(rollout_m=2)
    assert config_hash("smc", plain, "m") == "26465a276765"  # as written before they existed
    assert config_hash("smc", plain, "m") == config_hash("smc", EvalSettings(rollout_m=2), "m")
    assert config_hash("lookahead", plain, "m") != config_hash("lookahead", knob, "m")
    assert config_hash("smc", plain, "m") != config_hash("smc", EvalSettings(block_size=2), "m")
