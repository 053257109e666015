"""The one method registry: a method added in one place reaches every consumer.

A test-only method, ``tempered2`` (temperature sampling at T = 0.5), is registered by a
fixture and taken back afterwards; the CLI, the bench, the evaluation, Compare and the
charts pick it up without any edit to them. Also: the registry's own contract (order,
duplicates, unknown names, compute accounting) and the n_particles rename, which must keep
old results files, settings and config hashes working.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pandas as pd
import pytest

from explorer import comparison
from powersmc_core.engine.config import SMCConfig
from powersmc_core.evaluation.problem_run import (
    METHOD_FIELDS,
    EvalSettings,
    config_hash,
    method_config,
)
from powersmc_core.evaluation.runner import frame
from powersmc_core.models.toy import ToyLM
from powersmc_core.plotting.style import METHOD_COLORS
from powersmc_core.samplers.baselines import TemperatureSampling
from powersmc_core.samplers.registry import (
    METHODS,
    Method,
    Sampler,
    make_sampler,
    register,
    token_forwards,
    unregister,
)

BUILT_IN = ("base", "lowtemp", "smc", "mh", "bon", "greedy", "rollout", "lookahead")
NAME = "tempered2"


def _tempered2(
    model, config: SMCConfig, *, stop, n_particles, stream_every, track_text, **_
) -> Sampler:
    """Temperature sampling at T = 0.5, n_particles independent sequences."""
    return TemperatureSampling(
        model,
        0.5,
        n_particles=n_particles,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
        stop=stop,
        track_text=track_text,
        stream_every=stream_every,
    )


@pytest.fixture
def tempered2() -> Iterator[Method]:
    method = register(
        Method(
            NAME,
            "temperature sampling at T = 0.5",
            _tempered2,
            ("max_new_tokens", "seed"),
            "#17becf",
        )
    )
    try:
        yield method
    finally:
        unregister(NAME)


# ---- the registry itself ---------------------------------------------------------------------
def test_built_in_methods_in_order():
    assert tuple(METHODS) == BUILT_IN
    assert ",".join(METHODS) == "base,lowtemp,smc,mh,bon,greedy,rollout,lookahead"
    assert "smc" in METHODS and "sampling" not in METHODS
    assert all(isinstance(METHODS[name], Method) for name in METHODS)


def test_register_refuses_a_duplicate_and_unknown_names_list_the_valid_ones(tempered2):
    with pytest.raises(ValueError, match="already registered"):
        register(tempered2)
    with pytest.raises(ValueError, match="smc") as info:
        make_sampler("nope", ToyLM.trap(), SMCConfig())
    assert NAME in str(info.value)
    with pytest.raises(ValueError, match="non-empty"):
        register(Method("a,b", "", _tempered2, (), "#000000"))


def test_unregister_takes_the_method_back():
    register(Method(NAME, "", _tempered2, (), "#000000"))
    assert NAME in METHODS
    unregister(NAME)
    assert NAME not in METHODS and tuple(METHODS) == BUILT_IN
    with pytest.raises(ValueError):
        unregister(NAME)


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_method_reports_its_token_forwards(name):
    """The compute accounting: every built-in run reports token forwards (> 0)."""
    config = SMCConfig(alpha=2.0, n_particles=3, max_new_tokens=4, seed=1)
    sampler = make_sampler(name, ToyLM.trap(), config, n_particles=2, mh_steps=1)
    result = sampler.run([])
    assert METHODS[name].cost(result) == token_forwards(result) > 0


def test_the_evaluation_fields_are_settings_fields():
    known = set(EvalSettings.__dataclass_fields__)
    for name, method in METHODS.items():
        assert set(method.fields) <= known, name
        assert METHOD_FIELDS[name] == method.fields


def test_mh_refuses_batched_records():
    with pytest.raises(ValueError, match="MH streams one record per MH step"):
        make_sampler("mh", ToyLM.trap(), SMCConfig(), stream_every=2)


# ---- one registration reaches every consumer -------------------------------------------------
def test_a_new_method_appears_in_the_views(tempered2):
    assert list(METHODS)[-1] == NAME
    assert comparison.COMPARE_METHODS[NAME] == "temperature sampling at T = 0.5"
    assert list(comparison.COMPARE_METHODS) == [*BUILT_IN, NAME]
    assert METHOD_COLORS[NAME] == "#17becf" and METHOD_COLORS["exact"] == "#111111"
    assert METHOD_FIELDS[NAME] == ("max_new_tokens", "seed")


def test_a_new_method_runs_through_the_cli(tempered2, tmp_path, capsys):
    from powersmc_core.cli.main import main

    assert main(["run", "--help"]) == 0  # the choices are read when the parser is built
    assert f"{{{','.join(METHODS)}}}" in capsys.readouterr().out
    path = tmp_path / "run.json"
    argv = ["run", "--model", "toy-trap", "--method", NAME, "--n-particles", "3"]
    argv += ["--max-new-tokens", "3", "--json", str(path), "--quiet"]
    assert main(argv) == 0
    data = json.loads(path.read_text())
    expected = make_sampler(
        NAME, ToyLM.trap(), SMCConfig(n_particles=3, max_new_tokens=3), n_particles=3
    ).run([])
    assert data["completions"] == [list(c) for c in expected.completions]


def test_a_new_method_is_a_bench_row(tempered2, tmp_path, capsys):
    from powersmc_core.cli.main import main

    path = tmp_path / "bench.json"
    argv = ["bench", "--model", "toy-random:4,8,0", "--n-particles", "2"]
    argv += ["--max-new-tokens", "3", "--repeats", "1", "--no-warmup", "--skip", "mh"]
    assert main([*argv, "--quiet", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert list(data["times_s"]) == ["base", "limit", "smc", NAME]
    assert data["times_s"][NAME][0] > 0 and data["new_tokens"] == 3
    assert main([*argv, "--skip", NAME, "--quiet", "--json", str(path)]) == 0
    assert NAME not in json.loads(path.read_text())["times_s"]


def test_a_new_method_runs_through_the_evaluation(tempered2, tmp_path, capsys):
    from powersmc_core.cli.main import main

    out = tmp_path / "eval.csv"
    argv = ["eval", "--task", "toy", "--model", "toy-trap", "--n", "2", "--methods", f"base,{NAME}"]
    argv += ["--max-new-tokens", "3", "--out", str(out), "--no-progress", "--no-plots"]
    assert main(argv) == 0
    rows = pd.read_csv(out)
    mine = rows[rows["method"] == NAME]
    assert len(mine) == 2
    # Its settings subset, and nothing else, goes into its config (and its hash).
    assert json.loads(mine["config"].iloc[0]) == {"max_new_tokens": 3, "seed": 0}
    assert (mine["token_forwards"] > 0).all()
    assert f"| {NAME} |" in capsys.readouterr().out


def test_a_new_method_runs_through_compare(tempered2):
    config = SMCConfig(n_particles=2, max_new_tokens=3)
    runs = list(comparison.compare_runs(ToyLM.trap(), [], ["base", NAME], config))
    assert [r.method for r in runs] == ["base", NAME]
    frame_ = comparison.comparison_frame(runs, ToyLM.trap())
    assert list(frame_["method"]) == [METHODS["base"].description, tempered2.description]


# ---- n_particles: the one name, old files still read ------------------------------------------
def test_eval_settings_read_the_old_name():
    assert EvalSettings(particles=4) == EvalSettings(n_particles=4)
    assert EvalSettings.from_dict({"particles": 3}).n_particles == 3
    assert "particles" not in EvalSettings(n_particles=4).to_dict()


def test_config_hashes_survive_the_rename():
    """Pinned before the rename: resume keys of existing results files stay valid."""
    settings = EvalSettings(n_particles=4)
    pinned = {
        "smc": "975a1e145992",
        "bon": "c236da39dafc",
        "base": "6b182a1b9fea",
        "mh": "1ca2a6759ed9",
    }
    assert {m: config_hash(m, settings, "toy") for m in pinned} == pinned
    assert method_config("smc", settings)["n_particles"] == 4


def test_results_with_a_particles_column_still_load():
    rows = frame([{"method": "smc", "particles": 8, "config": '{"particles": 8}'}])
    assert "particles" not in rows and int(rows["n_particles"].iloc[0]) == 8
