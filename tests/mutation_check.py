"""Prove the exactness tests bite: break the engine's maths one line at a time, expect failures.

Each named mutation is an exact source-text replacement in a *copy* of ``powersmc_core``
(the working tree is never touched). Its anchor must occur exactly once, so a refactor that
moves or rewrites the line makes this script fail loudly instead of silently testing
nothing. For every mutation the relevant exactness tests against enumeration
(``tests/test_exactness_samplers.py``, or the mutation's own test file, e.g.
``tests/test_chopthin.py``) run against the mutated copy with ``-x``; the mutation is
*caught* when one of them fails. A surviving mutation is a missing test.

The copy is imported first: pytest runs in a scratch folder holding the copy and the
tests, and a guard in the scratch conftest aborts unless ``powersmc_core.__file__`` lies
in the copy (an editable install could otherwise win).

    python tests/mutation_check.py            # all mutations, 2 at a time
    python tests/mutation_check.py --jobs 1 drop_catch_up

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
    tests: tuple[str, ...]  # test ids inside test_file, most likely to catch first
    test_file: str = TESTS  # inside tests/


def smc(case: str) -> str:
    return f"test_smc_matches_the_exact_target[{case}]"


def mh(case: str) -> str:
    return f"test_mh_matches_the_exact_target[{case}]"


RAMPS = (smc("linear_ramp_longer_than_sequences"), smc("adaptive_ramp_longer_than_sequences"))
RESAMPLING = tuple(smc(f"resampling_{s}") for s in ("systematic", "multinomial", "residual"))
GREEDY = "test_greedy_is_the_argmax_path"
BASELINES = "test_baselines_keep_uniform_weights_and_best_of_n_keeps_the_argmax"
CHOOSER = "test_the_chosen_particle_is_drawn_by_weight"
CHOPTHIN_TESTS = "test_chopthin.py"
CHOPTHIN_SCHEME = (
    "test_every_scheme_hands_on_each_particles_weight_on_average[spread-chopthin_eta4]",
    "test_n_particles_normalised_weights_and_ratio_at_most_eta",
)
CHOPTHIN_MASS = tuple(f"test_a_schemes_post_mass_multiplies_z_hat[{k}]" for k in (1, 3))
CHOPTHIN_SMC = tuple(
    f"test_chopthin_smc_matches_the_exact_target[{case}]"
    for case in ("every_step", "ess_triggered", "truncation")
)
LOOKAHEAD_TESTS = "test_lookahead.py"
LOOKAHEAD_SMC = (
    *(
        f"test_lookahead_matches_the_exact_target[{case}]"
        for case in ("all_candidates", "prompt", "block_size_2", "truncation")
    ),
    "test_normalising_constant_is_unbiased_at_small_n",
)
LOOKAHEAD_ZETA = (
    "test_future_mass_is_unbiased_for_every_candidate[2.0]",
    "test_lookahead_finds_the_rare_branch_power_smc_misses",
)
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
        "engine/targets.py",
        (
            (
                "        return log_inc + (self.alpha - alpha_t)"
                " * torch.where(done, after.log_p, 0.0)\n",
                "        return log_inc\n",
            ),
        ),
        RAMPS,
    ),
    Mutation(
        "drop_bridging_of_finished",
        "finished particles get no (alpha_t - alpha_{t-1})·log p(y)",
        "engine/targets.py",
        (
            (
                "log_inc = local + (alpha_t - before.alpha) * before.log_p",
                "log_inc = local + (alpha_t - before.alpha) * torch.where(active, before.log_p, 0.0)",
            ),
        ),
        RAMPS,
    ),
    Mutation(
        "alpha_t_for_alpha_prev",
        "bridging factor (alpha_t - alpha_t) instead of (alpha_t - alpha_{t-1})",
        "engine/targets.py",
        (
            (
                "log_inc = local + (alpha_t - before.alpha) * before.log_p",
                "log_inc = local + (alpha_t - alpha_t) * before.log_p",
            ),
        ),
        RAMPS,
    ),
    Mutation(
        "drop_bridging_term",
        "the target's bridging term (alpha_t - alpha_{t-1})·log p(y_<t) dropped altogether",
        "engine/targets.py",
        (
            (
                "log_inc = local + (alpha_t - before.alpha) * before.log_p",
                "log_inc = local",
            ),
        ),
        RAMPS,
    ),
    Mutation(
        "skip_weight_reset",
        "weights kept (not reset to 1/N) after resampling",
        "engine/state.py",
        (("log_w=torch.where(resampled, log_w, self.log_w),", "log_w=self.log_w,"),),
        RESAMPLING,
    ),
    Mutation(
        "chopthin_post_weights_dropped",
        "the engine resets every weight to 1/N after resampling (chopthin's post weights lost)",
        "engine/state.py",
        (
            (
                "log_w=torch.where(resampled, log_w, self.log_w),",
                "log_w=torch.where(resampled, -torch.ones_like(log_w).sum().log(), self.log_w),",
            ),
        ),
        CHOPTHIN_SMC,
        CHOPTHIN_TESTS,
    ),
    Mutation(
        "post_mass_not_in_log_z",
        "log Ẑ does not take the post-resampling mass log sum_j v_j",
        "engine/state.py",
        (("log_z=self.log_z + torch.where(resampled, log_mass, 0.0),", ""),),
        CHOPTHIN_MASS + CHOPTHIN_SMC,
        CHOPTHIN_TESTS,
    ),
    Mutation(
        "chopthin_thin_without_reweighting",
        "a thinned survivor keeps its own weight W_i instead of the threshold a",
        "engine/resampling.py",
        (
            (
                "share = torch.where(thin, a * total / n, ",
                "share = torch.where(thin, weights, ",
            ),
        ),
        CHOPTHIN_SCHEME + CHOPTHIN_SMC,
        CHOPTHIN_TESTS,
    ),
    Mutation(
        "chopthin_chop_without_splitting",
        "each of the n_i copies of a chopped particle keeps the whole W_i",
        "engine/resampling.py",
        (
            (
                "weights / counts.clamp_min(1).to(weights.dtype))",
                "weights)",
            ),
        ),
        CHOPTHIN_SCHEME + CHOPTHIN_SMC,
        CHOPTHIN_TESTS,
    ),
    Mutation(
        "chopthin_offspring_by_w",
        "offspring drawn by W (as systematic) instead of by the expected counts h",
        "engine/resampling.py",
        (
            (
                "ancestors = systematic(h / total, generator)",
                "ancestors = systematic(weights, generator)",
            ),
        ),
        CHOPTHIN_SCHEME + CHOPTHIN_SMC,
        CHOPTHIN_TESTS,
    ),
    Mutation(
        "chopthin_mass_not_returned",
        "chopthin returns log_mass = 0 (its post weights normalised without their mass)",
        "engine/resampling.py",
        (
            (
                "return Resampled(ancestors, log_v - log_mass, log_mass)",
                "return Resampled(ancestors, log_v - log_mass, log_mass * 0)",
            ),
        ),
        CHOPTHIN_SCHEME + CHOPTHIN_SMC,
        CHOPTHIN_TESTS,
    ),
    Mutation(
        "chopthin_threshold_b_is_eta_a",
        "the threshold search puts the chopping point at eta·a instead of eta·a/2",
        "engine/resampling.py",
        (
            (
                "n_upto_b = torch.searchsorted(sorted_w, a * (eta / 2), right=True)",
                "n_upto_b = torch.searchsorted(sorted_w, a * eta, right=True)",
            ),
        ),
        ("test_threshold_solves_expected_offspring_equals_n[spread-4.0]",),
        CHOPTHIN_TESTS,
    ),
    Mutation(
        "resample_pre_update_weights",
        "ancestors drawn from W_{t-1} instead of the updated W_t",
        "engine/step.py",
        (
            (
                "resample(parts, weighted, t, ess, done, generator, reader)",
                "resample(parts, weighted, t, ess, done, generator, reader, grown.log_w)",
            ),
            (
                "    reader: Reader | None,\n) -> tuple[torch.Tensor, torch.Tensor, ParticleState]:",
                "    reader: Reader | None,\n    prior=None,\n"
                ") -> tuple[torch.Tensor, torch.Tensor, ParticleState]:",
            ),
            (
                "drawn = parts.resampler(state.log_w.exp(), generator)",
                "drawn = parts.resampler(prior.exp(), generator)",
            ),
        ),
        RESAMPLING,
    ),
    Mutation(
        "drop_mh_length_term",
        "MH acceptance without log|y| - log|y'|",
        "samplers/mh.py",
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
        "engine/proposals.py",
        (
            (
                "lq_token = (lp * (1.0 / tau)).to(wdtype) - log_mass.to(wdtype)",
                "lq_token = lp.to(wdtype)",
            ),
        ),
        (smc("prompt"), smc("non_optimal_tau"), smc("truncation")),
    ),
    Mutation(
        "proposal_log_q_without_normaliser",
        "the proposal's log q drops its normaliser log M = log sum_v p(v)^(1/tau)",
        "engine/proposals.py",
        (
            (
                "lq_token = (lp * (1.0 / tau)).to(wdtype) - log_mass.to(wdtype)",
                "lq_token = (lp * (1.0 / tau)).to(wdtype)",
            ),
        ),
        (smc("prompt"), smc("non_optimal_tau"), smc("truncation")),
    ),
    Mutation(
        "proposal_mass_without_row_max",
        "log sum_v p^(1/tau) read off the running sum without adding back the row maximum",
        "engine/proposals.py",
        (
            (
                "log_mass = top.squeeze(-1).to(mass.dtype) + mass.log()",
                "log_mass = mass.log()",
            ),
        ),
        (smc("prompt"), smc("non_optimal_tau"), smc("truncation")),
    ),
    Mutation(
        "argmax_proposal_takes_the_least_likely_token",
        "the greedy proposal's point mass on argmin instead of argmax",
        "engine/proposals.py",
        (
            (
                "tokens = torch.argmax(logp, dim=-1)  # (N,) the first maximum",
                "tokens = torch.argmin(logp, dim=-1)  # (N,) the first maximum",
            ),
        ),
        (GREEDY,),
    ),
    Mutation(
        "unweighted_target_returns_the_power_weight",
        "the baselines' target G = 1 replaced by the power target's weight",
        "engine/targets.py",
        (
            (
                "        return torch.zeros_like(before.log_w)\n",
                "        return PowerTarget(2.0).log_increment(before, after, draw, alpha_t, done)\n",
            ),
        ),
        (BASELINES,),
    ),
    Mutation(
        "weighted_chooser_ignores_the_weights",
        "result().chosen drawn uniformly instead of by W",
        "engine/choosers.py",
        (
            (
                "torch.multinomial(weights.to(torch.float64).cpu(), 1,",
                "torch.multinomial(torch.ones_like(weights, dtype=torch.float64).cpu(), 1,",
            ),
        ),
        (CHOOSER,),
    ),
    Mutation(
        "best_of_n_keeps_the_least_likely",
        "best-of-N's chooser takes argmin log p",
        "engine/choosers.py",
        (
            (
                "return max(range(len(values)), key=values.__getitem__)",
                "return min(range(len(values)), key=values.__getitem__)",
            ),
        ),
        (BASELINES,),
    ),
    Mutation(
        "mh_proposal_scored_at_tau_1",
        "MH acceptance uses log q at tau = 1 while drawing at tau",
        "samplers/mh.py",
        (
            (
                "log_q.append(float(logq[tok]))",
                "log_q.append(float(torch.log_softmax(row, -1)[tok]))",
            ),
        ),
        (mh("non_optimal_tau"), mh("prompt"), mh("truncation")),
    ),
    Mutation(
        "lookahead_no_second_stage",
        "look-ahead: after resampling on W·S the weights are not divided by S of the ancestor",
        "engine/lookahead.py",
        (
            (
                "post = drawn.log_w - log_s[drawn.ancestors]",
                "post = drawn.log_w + 0 * log_s[drawn.ancestors]",
            ),
        ),
        LOOKAHEAD_SMC,
        LOOKAHEAD_TESTS,
    ),
    Mutation(
        "lookahead_resample_on_w_alone",
        "look-ahead: the first stage resamples on W instead of W·S (the second still divides)",
        "engine/lookahead.py",
        (
            (
                "twisted, log_first = reweight(state.log_w, log_s)",
                "twisted, log_first = reweight(state.log_w, 0 * log_s)",
            ),
        ),
        LOOKAHEAD_SMC,
        LOOKAHEAD_TESTS,
    ),
    Mutation(
        "lookahead_rollouts_without_importance_weight",
        "look-ahead: rollout weights drop p^a/q (ζ̂ = 1: the twist is lost, ζ̂ biased)",
        "engine/lookahead.py",
        (
            (
                "torch.where(alive, alpha * lp_token - lq_token, 0.0)",
                "torch.where(alive, 0 * lq_token, 0.0)",
            ),
        ),
        LOOKAHEAD_ZETA,
        LOOKAHEAD_TESTS,
    ),
    Mutation(
        "lookahead_future_at_alpha_t",
        "look-ahead: future='final' ignored, the rollouts value the future at alpha_t",
        "engine/lookahead.py",
        (
            (
                'b = parts.schedule.alpha if self.config.future == "final" else alpha_t',
                "b = alpha_t",
            ),
        ),
        ("test_the_twist_values_the_future_at_the_chosen_exponent[final-True]",),
        LOOKAHEAD_TESTS,
    ),
    Mutation(
        "lookahead_proposal_unnormalised",
        "look-ahead: log q(v) uses ψ(v) without its normaliser S (the weight is off by S)",
        "engine/lookahead.py",
        (
            (
                "log_psi - torch.logsumexp(log_psi, -1, keepdim=True),",
                "log_psi,",
            ),
        ),
        LOOKAHEAD_SMC,
        LOOKAHEAD_TESTS,
    ),
)

GUARD = '''

def pytest_sessionstart(session):
    """Added by tests/mutation_check.py: the mutated copy, not the tree, must be imported."""
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


def scratch(name: str, test_file: str = TESTS) -> Path:
    """A folder with a fresh copy of the package and one test file (guarded conftest)."""
    folder = Path(tempfile.mkdtemp(prefix=f"mutation-{name}-"))
    shutil.copytree(
        ROOT / "powersmc_core",
        folder / "powersmc_core",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    tests = folder / "tests"
    tests.mkdir()
    shutil.copy(ROOT / "tests" / test_file, tests / test_file)
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    (tests / "conftest.py").write_text(conftest + GUARD.format(expected=str(folder)))
    return folder


def run_tests(folder: Path, tests: tuple[str, ...], test_file: str = TESTS) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(folder), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    ids = [f"tests/{test_file}::{t}" for t in tests]
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-o", "addopts=", "--rootdir", str(folder), *ids]  # fmt: skip
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def check(mutation: Mutation) -> tuple[str, str, float]:
    """(status, detail, seconds): caught (detail: the failing test), survived, or error."""
    start = time.perf_counter()
    folder = scratch(mutation.name, mutation.test_file)
    try:
        apply(mutation, folder / "powersmc_core")
        code, output = run_tests(folder, mutation.tests, mutation.test_file)
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
