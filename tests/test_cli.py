"""Command line: flags map onto SMCConfig, outputs are complete, bad input is one line, exit 2.

Everything runs in-process on the toy models (milliseconds); one test goes through
``python -m powersmc_core`` and one through a random-init transformer.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types
from dataclasses import fields

import pytest

from powersmc_core import SMCConfig, ToyLM
from powersmc_core.answers.extract import NO_ANSWER, answer_posterior, decide
from powersmc_core.cli.main import CONFIG_FLAGS, build_parser, config_from_args, main, parse_prompt
from powersmc_core.io.trace import read_trace
from powersmc_core.samplers.registry import METHODS

TRAP_COMPLETIONS = {"A x", "A y", "A z", "B x", "B y", "B z"}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- flags -------------------------------------------------------------------------------
def test_every_config_field_has_a_flag():
    assert set(CONFIG_FLAGS.values()) == {f.name for f in fields(SMCConfig)}
    run = build_parser().parse_args(["run", "--prompt", "x"])
    for dest in CONFIG_FLAGS:
        assert hasattr(run, dest), dest


def test_flags_reach_the_config():
    args = build_parser().parse_args(
        [
            "run",
            "--alpha",
            "2.5",
            "--particles",
            "7",
            "--ess-threshold",
            "0.3",
            "--resampling",
            "multinomial",
            "--schedule",
            "linear",
            "--alpha-start",
            "1.5",
            "--ramp-tokens",
            "9",
            "--target-ess",
            "0.7",
            "--proposal-temperature",
            "0.5",
            "--block-size",
            "3",
            "--max-new-tokens",
            "11",
            "--seed",
            "5",
        ]
    )
    assert config_from_args(args) == SMCConfig(
        alpha=2.5,
        n_particles=7,
        ess_threshold=0.3,
        resampling="multinomial",
        schedule="linear",
        alpha_start=1.5,
        ramp_tokens=9,
        target_ess=0.7,
        proposal_temperature=0.5,
        block_size=3,
        max_new_tokens=11,
        seed=5,
    )


def test_defaults_are_the_config_defaults():
    assert config_from_args(build_parser().parse_args(["run"])) == SMCConfig()


def test_toy_prompts_take_names_or_ids():
    trap = ToyLM.trap()
    assert parse_prompt(trap, "A") == [0]
    assert parse_prompt(trap, "1") == [1]
    assert parse_prompt(trap, "") == []
    assert parse_prompt(ToyLM.random(4, 4, 0), "a, b") == [0, 1]
    with pytest.raises(ValueError, match="unknown token"):
        parse_prompt(trap, "Q")


# ---- run ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_every_method_prints_a_trap_completion(capsys, method):
    code, out, err = run_cli(
        capsys, "run", "--model", "toy-trap", "--method", method, "--particles", "8"
    )
    assert code == 0, err
    assert out.strip() in TRAP_COMPLETIONS
    assert "Traceback" not in err
    assert "steps" in err and "tokens/s" in err  # the summary


def test_smc_summary_reports_ess_resamples_and_log_z(capsys):
    code, _, err = run_cli(capsys, "run", "--model", "toy-trap", "--particles", "16")
    assert code == 0
    for label in ("ESS min", "resamples", "log Ẑ", "tokens/s"):
        assert label in err


def test_quiet_prints_only_the_completion(capsys):
    code, out, err = run_cli(capsys, "run", "--model", "toy-trap", "--quiet")
    assert code == 0
    assert out.strip() in TRAP_COMPLETIONS and len(out.splitlines()) == 1
    assert err == ""


def test_json_holds_result_config_timing_and_text(capsys, tmp_path):
    path = tmp_path / "out" / "run.json"  # missing folders are created
    code, out, _ = run_cli(
        capsys,
        "run",
        "--model",
        "toy-trap",
        "--particles",
        "12",
        "--schedule",
        "linear",
        "--ramp-tokens",
        "2",
        "--seed",
        "3",
        "--json",
        str(path),
        "--quiet",
    )
    assert code == 0
    data = json.loads(path.read_text())
    assert (
        data["config"]
        == SMCConfig(n_particles=12, schedule="linear", ramp_tokens=2, seed=3).to_dict()
    )
    assert data["text"] == out.strip() == data["texts"][data["chosen"]]
    assert len(data["completions"]) == len(data["weights"]) == 12
    assert math.isclose(sum(data["weights"]), 1.0, rel_tol=1e-9)
    timing = data["timing"]
    assert timing["tokens"] == data["extras"]["token_forwards"]
    assert math.isclose(
        timing["tokens_per_s"], timing["tokens"] / timing["elapsed_s"], rel_tol=1e-9
    )
    assert data["model"] == "toy-trap" and data["method"] == "smc"


def test_trace_reads_back_with_every_step(capsys, tmp_path):
    json_path, trace_path = tmp_path / "r.json", tmp_path / "r.jsonl"
    code, *_ = run_cli(
        capsys,
        "run",
        "--model",
        "toy-random:4,5,1",
        "--particles",
        "6",
        "--json",
        str(json_path),
        "--trace",
        str(trace_path),
        "--quiet",
    )
    assert code == 0
    trace = read_trace(trace_path)
    result = json.loads(json_path.read_text())
    assert len(trace.records) == result["n_steps"]
    assert trace.config == result["config"]
    assert trace.result is not None and trace.result["log_z"] == result["log_z"]
    assert [r.ess for r in trace.records] == result["ess_trace"]


def test_same_seed_same_output(capsys, tmp_path):
    outputs = []
    for name in ("a.json", "b.json"):
        path = tmp_path / name
        args = ["run", "--model", "toy-random:5,6,2", "--particles", "9", "--seed", "4"]
        assert main([*args, "--json", str(path), "--quiet"]) == 0
        data = json.loads(path.read_text())
        outputs.append((data["completions"], data["weights"], data["chosen"]))
    capsys.readouterr()
    assert outputs[0] == outputs[1]


def test_stream_every_gives_the_same_result_and_trace(capsys, tmp_path):
    outputs = []
    for every in ("1", "4"):
        path, trace = tmp_path / f"k{every}.json", tmp_path / f"k{every}.jsonl"
        args = ["run", "--model", "toy-random:5,6,2", "--particles", "9", "--seed", "4"]
        args += ["--ess-threshold", "0.9", "--stream-every", every, "--quiet"]
        assert main([*args, "--json", str(path), "--trace", str(trace)]) == 0
        data = json.loads(path.read_text())
        steps = [json.loads(line) for line in trace.read_text().splitlines()[1:]]
        for step in steps:
            step.pop("elapsed", None)
        outputs.append((data["completions"], data["weights"], data["log_z"], steps))
    capsys.readouterr()
    assert outputs[0] == outputs[1] and len(outputs[0][3]) >= 2


def test_bon_chooses_the_most_likely_particle(capsys, tmp_path):
    path = tmp_path / "bon.json"
    code, *_ = run_cli(
        capsys, "run", "--model", "toy-trap", "--method", "bon", "-n", "8", "--json", str(path)
    )
    assert code == 0
    data = json.loads(path.read_text())
    assert data["log_p"][data["chosen"]] == max(data["log_p"])


def test_stop_string_ends_particles_at_that_text(capsys, tmp_path):
    path = tmp_path / "stop.json"
    code, *_ = run_cli(
        capsys,
        "run",
        "--model",
        "toy-trap",
        "--particles",
        "32",
        "--stop",
        "A",
        "--json",
        str(path),
        "--quiet",
    )
    assert code == 0
    data = json.loads(path.read_text())
    with_a = [c for c in data["completions"] if c[0] == 0]
    assert with_a, "alpha=4 still leaves some A particles among 32 (p ≈ 0.5 each)"
    assert all(c == [0] for c in with_a)  # stopped right after "A"


def test_mh_json_reports_its_settings(capsys, tmp_path):
    path = tmp_path / "mh.json"
    code, *_ = run_cli(
        capsys,
        "run",
        "--model",
        "toy-trap",
        "--method",
        "mh",
        "--mh-steps",
        "3",
        "--mh-block-size",
        "1",
        "--max-new-tokens",
        "3",
        "--json",
        str(path),
        "--quiet",
    )
    assert code == 0
    data = json.loads(path.read_text())
    assert data["mh"] == {"block_size": 1, "mh_steps": 3}
    assert data["log_z"] == "nan"  # MH estimates no normalising constant
    assert len(data["extras"]["acceptance_trace"]) == 3 * 3  # 3 blocks of 1 token, 3 steps each


def test_transformer_model_end_to_end(capsys, tmp_path):
    path = tmp_path / "tiny.json"
    code, out, err = run_cli(
        capsys,
        "run",
        "--random-init",
        "tiny",
        "--prompt",
        "hello",
        "--particles",
        "3",
        "--max-new-tokens",
        "4",
        "--json",
        str(path),
        "--quiet",
    )
    assert code == 0, err
    data = json.loads(path.read_text())
    assert data["model"] == "random:tiny"
    assert 1 <= data["n_steps"] <= 4
    assert out.strip() == data["text"].strip()


# ---- bad input -----------------------------------------------------------------------------
def _file(tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    return str(blocker / "out.json")  # its "folder" is a file


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--alpha", "0"], "alpha must be > 0"),
        (["--alpha", "-1"], "alpha must be > 0"),
        (["--alpha", "nan"], "alpha must be finite"),
        (["--particles", "0"], "n_particles"),
        (["--ess-threshold", "2"], "ess_threshold"),
        (["--max-new-tokens", "0"], "max_new_tokens"),
        (["--alpha", "four"], "invalid float value"),
        (["--schedule", "cosine"], "invalid choice"),
        (["--prompt", "Q"], "unknown token 'Q'"),
        (["--prompt", "A A A A"], "prompt has 4 tokens"),
        (["--method", "mh", "--trace", "t.jsonl"], "--trace"),
        (["--mh-steps", "-1", "--method", "mh"], "mh_steps"),
        (["--stream-every", "0"], "stream_every must be an integer >= 1"),
        (["--stream-every", "4", "--stop", "b"], "need stream_every=1"),
        (["--stream-every", "4", "--method", "mh"], "MH streams one record per MH step"),
    ],
)
def test_bad_input_is_one_error_line(capsys, argv, needle):
    code, out, err = run_cli(capsys, "run", "--model", "toy-trap", "--quiet", *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0]


def test_unwritable_output_paths_fail_before_decoding(capsys, tmp_path):
    for flag, path in (("--json", str(tmp_path)), ("--trace", _file(tmp_path))):
        code, out, err = run_cli(capsys, "run", "--model", "toy-trap", flag, path)
        assert code == 2 and out == ""
        assert err.startswith(f"error: {flag}: ") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--model", "toy-nope"], "toy"),
        (["--model", "./no/such/folder"], "does not exist"),
        (["--random-init", "gpt-17"], "unknown random-init architecture"),
        (["--random-init", "tiny", "--prompt", "   "], "prompt is empty"),
        (["--random-init", "tiny"], "prompt is empty"),
        (["--random-init", "tiny", "--prompt", "hi", "--device", "tpu"], "device"),
    ],
)
def test_bad_models_and_prompts_are_one_error_line(capsys, argv, needle):
    code, out, err = run_cli(capsys, "run", "--quiet", *argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0]


def test_missing_subcommand_is_a_usage_error(capsys):
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_help_exits_zero(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--alpha", "--particles", "--ramp-tokens", "--method", "--trace", "--boxed"):
        assert flag in out


# ---- eval delegation ---------------------------------------------------------------------------
def test_eval_is_delegated_lazily(capsys, monkeypatch):
    seen = {}

    def add_arguments(parser):
        parser.add_argument("--tasks", type=int, default=1)

    def fake_main(args):
        seen["tasks"] = args.tasks
        return 7

    module = types.ModuleType("powersmc_core.evaluation.cli")
    module.add_arguments, module.main = add_arguments, fake_main
    monkeypatch.setitem(sys.modules, "powersmc_core.evaluation.cli", module)
    assert main(["eval", "--tasks", "3"]) == 7
    assert seen == {"tasks": 3}


def test_eval_absent_is_one_error_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "powersmc_core.evaluation.cli", None)  # import fails
    code, out, err = run_cli(capsys, "eval")
    assert code == 2 and out == ""
    assert err.startswith("error: the eval subcommand is not available")


# ---- --answer ----------------------------------------------------------------------------
def printed_posterior(err: str) -> tuple[str, list[tuple[str, float, int]]]:
    """(decided answer, rows) read back from the summary's answer lines."""
    lines = err.splitlines()
    decided = next(line for line in lines if line.startswith("answer "))
    start = next(i for i, line in enumerate(lines) if line.startswith("posterior "))
    rows = []
    for line in lines[start + 1 :]:
        label, probability, count = line.strip().rsplit(maxsplit=2)
        rows.append((label.strip(), float(probability), int(count)))
    return decided.split(maxsplit=1)[1].rsplit("  (", 1)[0], rows


def expected_rows(post) -> list[tuple[str, float, int]]:
    rows = [(r["answer"], r["probability"], r["count"]) for r in post.rows()]
    if all(label != NO_ANSWER for label, *_ in rows):
        rows.append((NO_ANSWER, 0.0, 0))  # the bucket is printed even when empty
    return rows


@pytest.mark.parametrize("rule", ["chosen", "weighted-vote", "majority-vote"])
def test_answer_prints_the_posterior_of_the_result(capsys, tmp_path, rule):
    path = tmp_path / "run.json"
    argv = ["--model", "toy-trap", "-n", "12", "--seed", "3", "--ess-threshold", "0"]
    code, out, err = run_cli(
        capsys, "run", *argv, "--answer", rule, "--extractor", "exact", "--json", str(path)
    )
    assert code == 0, err
    data = json.loads(path.read_text())
    texts = ToyLM.trap().decode_batch(data["completions"])
    log_w = [math.log(w) if w > 0 else -math.inf for w in data["weights"]]
    post = answer_posterior(texts, log_w, "exact", chosen=data["chosen"])
    decided, rows = printed_posterior(err)
    assert decided == decide(post, rule)
    expected = expected_rows(post)
    assert [(a, c) for a, _, c in rows] == [(a, c) for a, _, c in expected]
    for (_, printed, _), (_, exact, _) in zip(rows, expected, strict=True):
        assert printed == pytest.approx(exact, abs=5e-5)  # printed to 4 decimals
    assert len(expected) > 2  # several answers: the table is not trivially one row
    assert data["answer"] == {
        "rule": rule,
        "extractor": "exact",
        "decided": decide(post, rule),
        "posterior": [dict(r, probability=pytest.approx(r["probability"])) for r in post.rows()],
        "no_answer": 0.0,
    }
    assert out.strip() == texts[data["chosen"]]  # stdout is still the chosen completion


def test_weighted_vote_and_majority_vote_decide_differently(capsys, tmp_path):
    """Prompt B on the trap, proposal at T = 20 (near uniform over x, y, z), no resampling,
    alpha = 8: the particles spread over the endings, the weights p^alpha/q pile on x (0.9)."""
    argv = ["--model", "toy-trap", "--prompt", "B", "-n", "8", "--alpha", "8", "--seed", "0"]
    argv += ["--proposal-temperature", "20", "--ess-threshold", "0", "--extractor", "exact"]
    decided = {}
    for rule in ("weighted-vote", "majority-vote"):
        path = tmp_path / f"{rule}.json"
        code, _, err = run_cli(capsys, "run", *argv, "--answer", rule, "--json", str(path))
        assert code == 0, err
        decided[rule] = printed_posterior(err)[0]
        data = json.loads(path.read_text())["answer"]  # same seed: the same posterior
    # Weighted, x wins; counted, another ending with more particles (y or z, by the draw).
    majority = decided["majority-vote"]
    assert decided["weighted-vote"] == "x" and majority in ("y", "z")
    rows = {row["answer"]: row for row in data["posterior"]}
    assert rows["x"]["probability"] > 0.99 and rows[majority]["count"] > rows["x"]["count"]


def test_no_answer_bucket_is_shown_when_nothing_is_an_answer(capsys):
    # "auto" reads \boxed{}, #### or a number: the trap's letters are none of them.
    code, _, err = run_cli(capsys, "run", "--model", "toy-trap", "--answer", "weighted-vote")
    assert code == 0, err
    decided, rows = printed_posterior(err)
    assert decided.startswith("(none") and rows == [(NO_ANSWER, 1.0, SMCConfig().n_particles)]


def test_answer_flags_are_checked(capsys):
    code, _, err = run_cli(capsys, "run", "--model", "toy-trap", "--extractor", "exact")
    assert code == 2 and err.startswith("error: --extractor applies to --answer")
    code, _, err = run_cli(capsys, "run", "--model", "toy-trap", "--answer", "vote")
    assert code == 2 and "invalid choice" in err


# ---- python -m ---------------------------------------------------------------------------
def test_module_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "powersmc_core", "run", "--model", "toy-trap", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in TRAP_COMPLETIONS
    bad = subprocess.run(
        [sys.executable, "-m", "powersmc_core", "run", "--model", "toy-trap", "-n", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: n_particles")


@pytest.mark.parametrize("method", ["mh", "bon", "greedy"])
def test_run_gives_the_samplers_own_result_for_the_same_seed(capsys, tmp_path, method):
    """The CLI consumes each sampler's run object: its result is the sampler's own run()."""
    from powersmc_core.samplers.registry import make_sampler

    path = tmp_path / f"{method}.json"
    argv = ["--model", "toy-trap", "--method", method, "-n", "6", "--max-new-tokens", "3"]
    argv += ["--mh-steps", "2", "--seed", "5"]
    code, *_ = run_cli(capsys, "run", *argv, "--json", str(path), "--quiet")
    assert code == 0
    data = json.loads(path.read_text())
    args = build_parser().parse_args(["run", *argv])
    sampler = make_sampler(
        method, ToyLM.trap(), config_from_args(args), n_particles=6, mh_steps=2, mh_block_size=None
    )
    expected = sampler.run([])
    assert data["chosen"] == expected.chosen
    assert data["completions"] == [list(c) for c in expected.completions]
    if method == "bon":
        assert data["log_p"][data["chosen"]] == max(data["log_p"])
