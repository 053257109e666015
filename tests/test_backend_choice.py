"""``--backend`` and ``--threads`` on run, bench and eval (issue 15): which backend ran,
said in the summary, --json, the bench JSON and eval rows; clear errors naming
``make fast``; auto's fallback to torch said out loud.

Toy models for the flags; the embedded model where a GGUF is needed (torch ~16 s the
first time in a process, llama.cpp ~1 s). Tests that run llama.cpp need the optional
package (``make fast``) and are skipped without it, saying so.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from powersmc_core.cli.main import main
from powersmc_core.evaluation.problem_run import EvalSettings
from powersmc_core.evaluation.runner import plan_jobs
from powersmc_core.evaluation.sweep import execute
from powersmc_core.evaluation.tasks import load_task
from powersmc_core.models import backends

HAS_LLAMACPP = importlib.util.find_spec("llama_cpp") is not None
needs_llamacpp = pytest.mark.skipif(
    not HAS_LLAMACPP, reason="llama-cpp-python is not installed (make fast)"
)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ---- run ---------------------------------------------------------------------------------
def test_run_says_which_backend_ran(capsys, tmp_path):
    path = tmp_path / "run.json"
    code, _, err = run_cli(capsys, "run", "--model", "toy-trap", "--json", str(path))
    assert code == 0, err
    assert "backend      torch  (auto: not a GGUF model, so torch)" in err
    data = json.loads(path.read_text())
    assert data["backend"] == "torch"
    assert data["backend_reason"] == "auto: not a GGUF model, so torch"


def test_backend_flag_defaults_to_auto_and_refuses_unknown_names(capsys):
    from powersmc_core.cli.main import build_parser

    args = build_parser().parse_args(["run"])
    assert (args.backend, args.threads) == ("auto", None)
    code, _, err = run_cli(capsys, "run", "--backend", "cuda")
    assert code == 2 and "invalid choice: 'cuda'" in one_error_line(err)


@pytest.mark.parametrize("command", ["run", "bench"])
def test_threads_below_one_is_one_error(capsys, command):
    code, _, err = run_cli(capsys, command, "--model", "toy-trap", "--threads", "0")
    assert code == 2 and "--threads must be >= 1" in one_error_line(err)


def test_llamacpp_on_a_toy_model_is_one_error(capsys):
    code, _, err = run_cli(capsys, "run", "--model", "toy-trap", "--backend", "llamacpp")
    assert code == 2 and "GGUF models only" in one_error_line(err)


def test_explicit_llamacpp_when_missing_names_make_fast(capsys, llamacpp_missing):
    code, _, err = run_cli(capsys, "run", "--model", "smollm2", "--backend", "llamacpp")
    assert code == 2 and "make fast" in one_error_line(err)


def test_explicit_llamacpp_that_fails_to_load_is_one_error(capsys, monkeypatch):
    if not HAS_LLAMACPP:  # choose_backend would refuse before loading
        monkeypatch.setattr(backends, "llamacpp_available", lambda: (True, "test double"))
    import powersmc_core.models.llamacpp.model as llamacpp_module

    def fail(*args, **kwargs):
        raise OSError("simulated broken libllama.so")

    monkeypatch.setattr(llamacpp_module, "load_llamacpp_model", fail)
    code, _, err = run_cli(capsys, "run", "--model", "smollm2", "--backend", "llamacpp")
    line = one_error_line(err)
    assert code == 2 and "simulated broken libllama.so" in line and "make fast" in line


def test_auto_falls_back_to_torch_and_says_so(capsys, tmp_path, llamacpp_missing):
    path = tmp_path / "run.json"
    code, _, err = run_cli(
        capsys, "run", "--model", "smollm2", "--prompt", "Hi", "-n", "2",
        "--max-new-tokens", "2", "--json", str(path),
    )  # fmt: skip
    assert code == 0, err
    assert "backend      torch  (auto: torch, because llama-cpp-python is not installed" in err
    assert "make fast" in err
    assert json.loads(path.read_text())["backend"] == "torch"


@needs_llamacpp
def test_run_on_llamacpp_records_it(capsys, tmp_path):
    path = tmp_path / "run.json"
    code, out, err = run_cli(
        capsys, "run", "--model", "smollm2", "--backend", "llamacpp", "--threads", "1",
        "--prompt", "Hi", "-n", "2", "--max-new-tokens", "3", "--json", str(path),
    )  # fmt: skip
    assert code == 0, err
    assert "backend      llamacpp  (llama.cpp backend requested" in err
    data = json.loads(path.read_text())
    assert data["backend"] == "llamacpp" and data["n_steps"] == 3
    assert out.strip() == data["text"].strip()


# ---- bench -------------------------------------------------------------------------------
def test_bench_records_the_backend(capsys, tmp_path):
    path = tmp_path / "bench.json"
    code = main(
        ["bench", "--model", "toy-random:4,8,0", "-n", "2", "-t", "3", "-r", "1", "-q",
         "--backend", "torch", "--skip", "mh", "--json", str(path)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    data = json.loads(path.read_text())
    assert (data["backend"], data["backend_reason"]) == ("torch", "torch backend requested")


def test_compare_backends_without_llamacpp_names_make_fast(capsys, llamacpp_missing):
    code, _, err = run_cli(capsys, "bench", "--compare-backends", "-n", "2", "-t", "2", "-q")
    assert code == 2 and "make fast" in one_error_line(err)


# ---- eval --------------------------------------------------------------------------------
def test_eval_rows_record_the_backend():
    problems = load_task("toy", 2)
    settings = EvalSettings(alpha=4.0, n_particles=4, max_new_tokens=3)
    jobs = plan_jobs(problems, ["smc"], [settings], "toy-trap")
    for options in ({}, {"backend": "auto"}, {"backend": "torch", "threads": 1}):
        rows = list(
            execute(
                jobs, model=None, model_spec="toy-trap", model_label="toy-trap",
                model_options=options,
            )
        )  # fmt: skip
        assert [row["backend"] for row in rows] == ["torch", "torch"]


def test_eval_llamacpp_on_a_toy_model_is_one_error(capsys, tmp_path):
    code = main(
        ["eval", "--model", "toy-trap", "--task", "toy", "--n", "1", "--backend", "llamacpp",
         "--out", str(tmp_path / "rows.csv"), "--no-plots", "--no-progress"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "error: the llama.cpp backend runs GGUF models only" in err
