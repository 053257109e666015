"""Ray sweeps on a local instance (2 CPUs) with the toy model: same rows as in-process, resumable.

Ray is an optional extra (pip install .[ray]); without it this module is skipped, saying so.
"""

from __future__ import annotations

import pandas as pd
import pytest

from powersmc_core.evaluation import run_eval, settings_grid
from powersmc_core.evaluation.runner import COLUMNS, KEY, ResultStore
from powersmc_core.evaluation.tasks import toy_problems

ray = pytest.importorskip("ray", reason="Ray is the optional extra: pip install '.[ray]'")

STABLE = [c for c in COLUMNS if c != "latency_s"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(list(KEY)).reset_index(drop=True)[STABLE]


def test_ray_sweep_matches_local_and_resumes(local_ray, tmp_path):
    problems = toy_problems(4)
    methods = ["base", "lowtemp", "smc", "bon"]
    grid = settings_grid([2.0, 4.0], [4], max_new_tokens=4, seed=3)
    local = run_eval(problems, methods, grid, model_spec="toy-trap", progress=False)
    out = tmp_path / "ray.parquet"

    class Interrupt(Exception):
        pass

    def interrupt(done, total, row):
        if done == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_eval(
            problems,
            methods,
            grid,
            model_spec="toy-trap",
            executor="ray",
            out=out,
            chunk_size=2,
            progress=False,
            callback=interrupt,
        )
    assert len(ResultStore(out).table()) == 5

    streamed = []
    remote = run_eval(
        problems,
        methods,
        grid,
        model_spec="toy-trap",
        executor="ray",
        out=out,
        chunk_size=2,
        progress=False,
        callback=lambda d, t, r: streamed.append(d),
    )
    total = len(local)
    assert total == 4 * (1 + 2 + 2 + 1)
    assert streamed == list(range(6, total + 1))  # each row came back as its task finished
    stored = ResultStore(out).table()
    assert len(stored) == total and not stored.duplicated(list(KEY)).any()
    pd.testing.assert_frame_equal(_sorted(remote), _sorted(local))
    pd.testing.assert_frame_equal(_sorted(stored), _sorted(local))
