"""Harness mechanics on the toy task: rows, resume after an interruption, pool, CLI, API."""

from __future__ import annotations

import argparse
import ast
import math
from pathlib import Path

import pandas as pd
import pytest

from powersmc_core import ToyLM
from powersmc_core.evaluation import EvalSettings, run_eval, run_task_comparison, settings_grid
from powersmc_core.evaluation.cli import add_arguments, main
from powersmc_core.evaluation.jobs import plan_jobs
from powersmc_core.evaluation.problem_run import METHODS, config_hash, run_one
from powersmc_core.evaluation.runner import COLUMNS, KEY, ResultStore
from powersmc_core.evaluation.summary import summary_table
from powersmc_core.evaluation.tasks import arithmetic_problems, toy_problems

SETTINGS = EvalSettings(alpha=4.0, n_particles=8, max_new_tokens=4, mh_steps=2, seed=5)
# Columns that must agree between runs of the same jobs (latency is wall-clock).
STABLE = [c for c in COLUMNS if c != "latency_s"]


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(list(KEY)).reset_index(drop=True)[STABLE]


class Interrupt(Exception):
    pass


def test_one_row_per_problem_method_with_diagnostics():
    model = ToyLM.trap()
    problems = toy_problems(4)
    df = run_eval(problems, list(METHODS), SETTINGS, model=model, progress=False)
    assert len(df) == 4 * len(METHODS)
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert set(df["answer"]) <= {"A x", "A y", "A z", "B x", "B y", "B z"}
    assert (df["correct"] == (df["answer"] == "B x")).all()
    smc = df[df["method"] == "smc"]
    assert ((smc["ess_min"] >= 1) & (smc["ess_min"] <= 8)).all()
    assert df[df["method"] != "smc"]["ess_min"].isna().all()
    mh = df[df["method"] == "mh"]["mh_acceptance"]
    assert ((mh >= 0) & (mh <= 1)).all()
    # log p of the chosen completion: the trap's sequences have p in {0.2, 0.36, 0.02}
    # (the trap table is built from float32 literals, hence the 1e-6 tolerance).
    logs = [math.log(p) for p in (0.2, 0.36, 0.02)]
    assert df["log_p"].map(lambda v: any(math.isclose(v, t, rel_tol=1e-6) for t in logs)).all()
    assert (df["tokens"] == 2).all()


def test_base_is_not_rerun_across_an_alpha_sweep():
    grid = settings_grid([2.0, 4.0], [4, 8], max_new_tokens=4)
    jobs = plan_jobs(toy_problems(3), ["base", "lowtemp", "smc", "bon"], grid, "toy-trap")
    by_method = pd.Series([job.method for job in jobs]).value_counts()
    assert by_method["base"] == 3  # independent of alpha and N
    assert by_method["lowtemp"] == 3 * 2  # alpha only
    assert by_method["bon"] == 3 * 2  # N only
    assert by_method["smc"] == 3 * 4
    assert config_hash("smc", grid[0], "a") != config_hash("smc", grid[0], "b")  # model in key


def test_runs_are_reproducible_from_seeds():
    model = ToyLM.trap()
    problem = toy_problems(1)[0]
    for method in METHODS:
        a = run_one(model, problem, method, SETTINGS)
        b = run_one(model, problem, method, SETTINGS)
        assert {k: a[k] for k in STABLE} == {k: b[k] for k in STABLE}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_interrupted_run_resumes_without_duplicates(tmp_path, suffix):
    model = ToyLM.trap()
    problems = toy_problems(5)
    methods = ["base", "lowtemp", "smc", "bon"]
    reference = run_eval(problems, methods, SETTINGS, model=model, progress=False)
    out = tmp_path / f"rows{suffix}"
    stop_after = 7

    def interrupt(done, total, row):
        if done == stop_after:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_eval(
            problems,
            methods,
            SETTINGS,
            model=model,
            out=out,
            chunk_size=3,
            progress=False,
            callback=interrupt,
        )
    partial = ResultStore(out).table()
    assert len(partial) == stop_after  # every row before the interruption was flushed

    seen = []
    final = run_eval(
        problems,
        methods,
        SETTINGS,
        model=model,
        out=out,
        chunk_size=3,
        progress=False,
        callback=lambda d, t, r: seen.append(d),
    )
    assert seen == list(range(stop_after + 1, 21))  # only the missing rows were computed
    stored = ResultStore(out).table()
    assert len(stored) == 20 and not stored.duplicated(list(KEY)).any()
    pd.testing.assert_frame_equal(_sorted(final), _sorted(reference))
    pd.testing.assert_frame_equal(_sorted(stored), _sorted(reference))
    # A third run has nothing to do.
    again = run_eval(
        problems,
        methods,
        SETTINGS,
        model=model,
        out=out,
        progress=False,
        callback=lambda d, t, r: pytest.fail("nothing should run"),
    )
    assert len(again) == 20


def test_store_rejects_unknown_formats_and_foreign_files(tmp_path):
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        ResultStore(tmp_path / "rows.json")
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a results file"):
        ResultStore(foreign)


def test_process_pool_gives_the_same_rows(tmp_path):
    problems = toy_problems(4)
    methods = ["base", "smc", "mh"]
    local = run_eval(problems, methods, SETTINGS, model_spec="toy-trap", progress=False)
    pooled = run_eval(
        problems,
        methods,
        SETTINGS,
        model_spec="toy-trap",
        workers=2,
        out=tmp_path / "pool.csv",
        progress=False,
    )
    pd.testing.assert_frame_equal(_sorted(pooled), _sorted(local))
    with pytest.raises(ValueError, match="model_spec"):
        run_eval(problems, methods, SETTINGS, model=ToyLM.trap(), workers=2, progress=False)


def test_text_tasks_need_a_text_model():
    with pytest.raises(ValueError, match="encode_prompt"):
        run_eval(arithmetic_problems(1), ["base"], SETTINGS, model=ToyLM.trap(), progress=False)


def test_api_run_task_comparison_reports_progress():
    calls = []
    df = run_task_comparison(
        ToyLM.trap(),
        toy_problems(3),
        "base,smc",
        SETTINGS,
        progress=lambda d, t, r: calls.append((d, t)),
    )
    assert len(df) == 6 and calls[-1] == (6, 6)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser


def test_cli_runs_prints_summary_and_resumes(tmp_path, capsys):
    out = tmp_path / "cli.csv"
    argv = [
        "--task",
        "toy",
        "--model",
        "toy-trap",
        "--n",
        "3",
        "--methods",
        "base,smc,bon",
        "--alpha",
        "2,4",
        "--particles",
        "4",
        "--max-new-tokens",
        "4",
        "--out",
        str(out),
        "--no-progress",
        "--no-png",
        "--plots",
        str(tmp_path / "plots"),
    ]
    assert main(_parser().parse_args(argv)) == 0
    printed = capsys.readouterr().out
    assert "| smc α=4 N=4 | 3 |" in printed and "| base | 3 |" in printed
    rows = pd.read_csv(out)
    assert len(rows) == 3 * (1 + 2 + 1)
    assert (tmp_path / "plots" / "accuracy_vs_latency.html").exists()
    assert (tmp_path / "plots" / "accuracy_vs_alpha.html").exists()
    assert main(_parser().parse_args(argv)) == 0  # resume: nothing new
    assert len(pd.read_csv(out)) == len(rows)


def test_cli_bad_input_returns_2(tmp_path, capsys):
    args = _parser().parse_args(["--task", "gsm8k", "--out", str(tmp_path / "x.csv")])
    assert main(args) == 2
    assert "--data" in capsys.readouterr().err
    args = _parser().parse_args(["--task", "toy", "--methods", "smc,sampling"])
    assert main(args) == 2
    with pytest.raises(SystemExit):
        _parser().parse_args(["--alpha", "four"])


def test_cli_answer_rules_and_paired_comparisons(tmp_path, capsys):
    out = tmp_path / "rules.csv"
    base = ["--task", "toy", "--model", "toy-trap", "--n", "4", "--methods", "base,smc,bon"]
    argv = [*base, "--particles", "8", "--max-new-tokens", "4", "--out", str(out)]
    argv += ["--no-progress", "--no-plots"]
    assert main(_parser().parse_args(argv)) == 0
    printed = capsys.readouterr().out
    for line in ("| smc α=4 N=8 |", "| smc α=4 N=8 · weighted-vote |", "| majority N=8 |"):
        assert line in printed
    assert "| smc α=4 N=8 · majority-vote |" in printed
    assert "McNemar" in printed and "| base | smc α=4 N=8 · weighted-vote | 4 |" in printed
    assert main(_parser().parse_args([*argv, "--answer", "weighted-vote"])) == 0
    printed = capsys.readouterr().out
    # One-sequence methods have one line whatever the rule; bon's weighted vote is its majority.
    assert "| base | 4 |" in printed and "| majority N=8 | 4 |" in printed
    assert "| smc α=4 N=8 · weighted-vote |" in printed and "| smc α=4 N=8 | 4 |" not in printed
    with pytest.raises(SystemExit):
        _parser().parse_args(["--answer", "vote"])


def test_rows_carry_every_decision_rule():
    df = run_eval(toy_problems(6), list(METHODS), SETTINGS, model=ToyLM.trap(), progress=False)
    single = df[~df["method"].isin(["smc", "bon", "rollout", "lookahead"])]  # N samples each
    assert (single["answer_weighted"] == single["answer"]).all()
    assert (single["answer_majority"] == single["answer"]).all()
    assert (single["answer_mass"] == 1.0).all()
    for rule in ("weighted", "majority"):
        graded = df[f"answer_{rule}"] == "B x"
        assert (df[f"correct_{rule}"].astype(bool) == graded).all()
    assert ((df["answer_mass"] > 0) & (df["answer_mass"] <= 1 + 1e-12)).all()  # sums of W_i round
    assert (df["no_answer_mass"] == 0).all()  # every toy completion is an answer


def test_greedy_follows_the_argmax_path():
    for model in (ToyLM.trap(), ToyLM.random(4, 4, seed=2)):
        problem = toy_problems(1, answer="B x")[0]
        row = run_one(model, problem, "greedy", SETTINGS)
        path, log_p = [], 0.0
        while True:  # walk argmax p(. | prefix) by hand on the slow path
            logp = model.next_token_logprobs(path)
            token = int(logp.argmax())
            log_p += float(logp[token])
            if token == model.eos_token_id:
                break
            path.append(token)
        assert row["completion"] == model.decode_batch([path])[0]
        assert row["log_p"] == pytest.approx(log_p)
        assert row["tokens"] == len(path) and row["token_forwards"] == len(path) + 1
    # On the trap, greedy takes the locally likely "A" and then x (ties go to the lowest id).
    assert run_one(ToyLM.trap(), toy_problems(1)[0], "greedy", SETTINGS)["answer"] == "A x"


def test_the_evaluation_runs_the_registry_and_knows_what_each_method_reads():
    from powersmc_core.evaluation.problem_run import METHOD_FIELDS, method_config
    from powersmc_core.samplers import registry

    assert METHODS is registry.METHODS and set(METHOD_FIELDS) == set(METHODS)
    assert method_config("greedy", SETTINGS) == {"max_new_tokens": SETTINGS.max_new_tokens}


def test_files_written_before_the_rules_resume_with_those_lines_left_out(tmp_path):
    out = tmp_path / "old.csv"
    model = ToyLM.trap()
    df = run_eval(toy_problems(3), ["base", "smc"], SETTINGS, model=model, progress=False)
    df.drop(columns=["answer_weighted", "correct_weighted", "correct_majority"]).to_csv(out)
    stored = ResultStore(out).table()
    assert stored["correct_weighted"].isna().all()
    summary = summary_table(stored, ["chosen", "weighted-vote", "majority-vote"])
    assert list(summary["rule"]) == ["chosen", "chosen"]  # base, smc: no rule data to show


PACKAGE = "powersmc_core.evaluation."


def _imports(path: Path) -> set[str]:
    """Sibling modules of powersmc_core/evaluation that ``path`` imports (anywhere in it)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.add(node.module or "__init__")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
            found.add(node.module[len(PACKAGE) :].split(".")[0] or "__init__")
    return found


def test_no_import_cycle_inside_the_evaluation_package():
    folder = Path(__file__).parents[1] / "powersmc_core" / "evaluation"
    graph = {p.stem: _imports(p) for p in folder.glob("*.py") if p.stem != "__init__"}
    assert "sweep" not in graph["runner"] or "runner" not in graph["sweep"]
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for nxt in graph.get(name, ()):
            if state.get(nxt) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*path, name, nxt])}")
            if nxt not in state:
                visit(nxt, [*path, name])
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [])
    # The library's answer tools never import the evaluation package.
    for module in ("extract", "grading"):
        text = (folder.parent / "answers" / f"{module}.py").read_text()
        assert "evaluation" not in {
            part
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.ImportFrom)
            for part in (node.module or "").split(".")
        }


def test_resume_keys_tell_backends_apart_and_keep_torch_keys():
    """llama.cpp rows never resume torch rows (a quantised forward); torch keys are as before."""
    from powersmc_core.evaluation.runner import model_label
    from powersmc_core.models.backends import llamacpp_available

    assert model_label(None, "smollm2", {"backend": "torch"}) == "smollm2"
    assert model_label(None, "toy-trap", {"backend": "auto"}) == "toy-trap"  # toys run on torch
    assert model_label(ToyLM.trap(), None) == ToyLM.trap().name
    if llamacpp_available()[0]:
        assert model_label(None, "smollm2", {"backend": "llamacpp"}) == "smollm2@llamacpp"
        assert model_label(None, "smollm2", {"backend": "auto"}) == "smollm2@llamacpp"
