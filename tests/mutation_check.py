"""Prove the exactness tests bite: break the engine's maths one line at a time, expect failures.

Each named mutation is an exact source-text replacement in a *copy* of ``powersmc_core``
(the working tree is never touched). Its anchor must occur exactly once, so a refactor that
moves or rewrites the line makes this script fail loudly instead of silently testing
nothing. For every mutation the relevant exactness tests against enumeration
(``tests/test_exactness_samplers.py``) run against the mutated copy with ``-x``; the
mutation is *caught* when one of them fails. A surviving mutation is a missing test.

The copy is imported first: pytest runs in a scratch folder holding the copy and the
tests, and a guard in the scratch conftest aborts unless ``powersmc_core.__file__`` lies
in the copy (an editable install could otherwise win).

    python scripts/mutation_check.py            # all mutations, 2 at a time
    python scripts/mutation_check.py --jobs 1 drop_catch_up

Prints a table mutation -> the test that caught it; exits 1 if any mutation survives,
2 if an anchor is missing or ambiguous (or the copy is not what gets imported).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = "test_exactness_samplers.py"


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    file: str  # inside powersmc_core/
    edits: tuple[tuple[str, str], ...]  # (anchor, replacement), each anchor exactly once
    tests: tuple[str, ...]  # test ids inside TESTS, most likely to catch first


def smc(case: str) -> str:
    return f"test_smc_matches_the_exact_target[{case}]"


def mh(case: str) -> str:
    return f"test_mh_matches_the_exact_target[{case}]"


RAMPS = (smc("linear_ramp_longer_than_sequences"), smc("adaptive_ramp_longer_than_sequences"))
RESAMPLING = tuple(smc(f"resampling_{s}") for s in ("systematic", "multinomial", "residual"))
MH_ALL = (
    mh("prompt"),
    mh("truncation"),
    mh("block_size_2"),
    mh("non_optimal_tau"),
    mh("stop_string"),
)

MUTATIONS = (
    Mutation(
        "drop_catch_up",
        "no (alpha - alpha_T)·log p(y) on the last step",
        "sampler.py",
        (
            (
                "        log_inc = log_inc + (self.config.alpha - alpha_t)"
                " * torch.where(done, self.log_p, 0.0)\n",
                "",
            ),
        ),
        RAMPS,
    ),
    Mutation(
        "drop_bridging_of_finished",
        "finished particles get no (alpha_t - alpha_{t-1})·log p(y)",
        "sampler.py",
        (
            (
                "log_inc = local + (alpha_t - previous) * prefix_log_p",
                "log_inc = local + (alpha_t - previous) * torch.where(active, prefix_log_p, 0.0)",
            ),
        ),
        RAMPS,
    ),
    Mutation(
        "alpha_t_for_alpha_prev",
        "bridging factor (alpha_t - alpha_t) instead of (alpha_t - alpha_{t-1})",
        "sampler.py",
        (
            (
                "log_inc = local + (alpha_t - previous) * prefix_log_p",
                "log_inc = local + (alpha_t - alpha_t) * prefix_log_p",
            ),
        ),
        RAMPS,
    ),
    Mutation(
        "skip_weight_reset",
        "weights kept (not reset to 1/N) after resampling",
        "sampler.py",
        (
            (
                "self.log_w = torch.where(resampled, self._uniform_log_w, self.log_w)",
                "self.log_w = self.log_w",
            ),
        ),
        RESAMPLING,
    ),
    Mutation(
        "resample_pre_update_weights",
        "ancestors drawn from W_{t-1} instead of the updated W_t",
        "sampler.py",
        (
            (
                "        log_inc, weights_ok = self._reweight(",
                "        prior_log_w = self.log_w\n        log_inc, weights_ok = self._reweight(",
            ),
            (
                "self._resample_step(self.log_w, t, ess, done, host)",
                "self._resample_step(prior_log_w, t, ess, done, host)",
            ),
        ),
        RESAMPLING,
    ),
    Mutation(
        "drop_mh_length_term",
        "MH acceptance without log|y| - log|y'|",
        "mh.py",
        (
            (
                "                    + math.log(len(path.tokens))\n"
                "                    - math.log(len(proposal.tokens))\n",
                "",
            ),
        ),
        MH_ALL,
    ),
    Mutation(
        "smc_proposal_scored_at_tau_1",
        "SMC weights use log q at tau = 1 while drawing at tau",
        "sampler.py",
        (
            (
                "lq_token = (lp * (1.0 / tau)).to(self._wdtype) - log_mass.to(self._wdtype)",
                "lq_token = lp.to(self._wdtype)",
            ),
        ),
        (smc("prompt"), smc("non_optimal_tau"), smc("truncation")),
    ),
    Mutation(
        "proposal_mass_without_row_max",
        "log sum_v p^(1/tau) read off the running sum without adding back the row maximum",
        "sampler.py",
        (
            (
                "log_mass = top.squeeze(-1).to(mass.dtype) + mass.log()",
                "log_mass = mass.log()",
            ),
        ),
        (smc("prompt"), smc("non_optimal_tau"), smc("truncation")),
    ),
    Mutation(
        "mh_proposal_scored_at_tau_1",
        "MH acceptance uses log q at tau = 1 while drawing at tau",
        "mh.py",
        (
            (
                "log_q.append(float(logq[tok]))",
                "log_q.append(float(torch.log_softmax(row, -1)[tok]))",
            ),
        ),
        (mh("non_optimal_tau"), mh("prompt"), mh("truncation")),
    ),
)

GUARD = '''

def pytest_sessionstart(session):
    """Added by scripts/mutation_check.py: the mutated copy, not the tree, must be imported."""
    import powersmc_core

    expected = {expected!r}
    if not powersmc_core.__file__.startswith(expected):
        raise SystemExit(
            f"mutation_check: imported {{powersmc_core.__file__}}, not the copy in {{expected}}"
        )
'''


class AnchorError(RuntimeError):
    pass


def apply(mutation: Mutation, package: Path) -> None:
    """Rewrite the copy's file; every anchor must occur exactly once (checked before writing)."""
    path = package / mutation.file
    text = path.read_text()
    for anchor, replacement in mutation.edits:
        count = text.count(anchor)
        if count != 1:
            raise AnchorError(
                f"{mutation.name}: anchor found {count} times in powersmc_core/{mutation.file} "
                f"(expected exactly once); update the mutation to the new code:\n{anchor!r}"
            )
        text = text.replace(anchor, replacement)
    path.write_text(text)


def scratch(name: str) -> Path:
    """A folder with a fresh copy of the package and the exactness tests (guarded conftest)."""
    folder = Path(tempfile.mkdtemp(prefix=f"mutation-{name}-"))
    shutil.copytree(
        ROOT / "powersmc_core",
        folder / "powersmc_core",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    tests = folder / "tests"
    tests.mkdir()
    shutil.copy(ROOT / "tests" / TESTS, tests / TESTS)
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    (tests / "conftest.py").write_text(conftest + GUARD.format(expected=str(folder)))
    return folder


def run_tests(folder: Path, tests: tuple[str, ...]) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(folder), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    ids = [f"tests/{TESTS}::{t}" for t in tests]
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-o", "addopts=", "--rootdir", str(folder), *ids]  # fmt: skip
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def check(mutation: Mutation) -> tuple[str, str, float]:
    """(status, detail, seconds): caught (detail: the failing test), survived, or error."""
    start = time.perf_counter()
    folder = scratch(mutation.name)
    try:
        apply(mutation, folder / "powersmc_core")
        code, output = run_tests(folder, mutation.tests)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    seconds = time.perf_counter() - start
    if "mutation_check: imported" in output:
        raise AnchorError(output.strip().splitlines()[-1])
    if code == 1:
        failed = re.findall(r"FAILED \S+::(\S+)", output)
        return "caught", failed[0] if failed else "(a test failed)", seconds
    if code == 0:
        return "SURVIVED", "every listed test passed", seconds
    return "ERROR", f"pytest exit {code}: {output.strip().splitlines()[-1:]}", seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="mutations checked at once (2)")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTATIONS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown mutations {unknown}; choose from {sorted(known)}")
    chosen = [known[n] for n in args.names] if args.names else list(MUTATIONS)
    # Check every anchor before spending minutes on tests.
    for mutation in chosen:
        folder = scratch(mutation.name)
        try:
            apply(mutation, folder / "powersmc_core")
        except AnchorError as error:
            print(f"mutation_check: {error}", file=sys.stderr)
            return 2
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            outcomes = list(pool.map(check, chosen))
    except AnchorError as error:
        print(f"mutation_check: {error}", file=sys.stderr)
        return 2
    width = max(len(m.name) for m in chosen)
    print(f"{'mutation':<{width}}  status    seconds  caught by")
    for mutation, (status, detail, seconds) in zip(chosen, outcomes, strict=True):
        print(f"{mutation.name:<{width}}  {status:<8}  {seconds:7.1f}  {detail}")
    bad = [m.name for m, (status, _, _) in zip(chosen, outcomes, strict=True) if status != "caught"]
    if bad:
        print(f"mutation_check: not caught: {bad} (a surviving mutation is a missing test)")
        return 1
    print(f"mutation_check: all {len(chosen)} mutations caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
