"""Per-(method, config) summary: accuracy with a Wilson 95% interval, likelihood, latency.

Wilson score interval for k successes in n trials, z = 1.96:
    centre = (p + z²/2n) / (1 + z²/n),   half = z·sqrt(p(1−p)/n + z²/4n²) / (1 + z²/n)
It stays inside [0, 1] and is sensible at p = 0 or 1, where the normal interval collapses;
there its bound is exactly 0 (k = 0) or 1 (k = n), not a float residue like 5e-17, and
the table's interval is rounded to ``CI_DIGITS`` decimals.
The latency ratio divides a row group's mean latency by the mean latency of ``base`` over
the same problems (NaN when base was not run).

A line is (method, config, answer rule): each run is graded under every decision rule
(``answers.RULES``: the chosen draw, the weighted vote, the majority vote), and ``rules``
picks the lines shown (``summary_table``'s default: all three); a rule that coincides with
another for a method (every rule, for one-sequence methods) is shown once, under the rule
it equals (``methods.effective_rule``).

Paired comparisons: two lines graded on the same problems differ only on the discordant
problems, b (first right, second wrong) and c (the reverse). Exact McNemar test: under
H0 (equal accuracy) b ~ Binomial(b + c, 1/2), so the two-sided p-value is
    p = min(1, 2·P(X <= min(b, c))),   X ~ Binomial(b + c, 1/2),   p = 1 when b + c = 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence

import pandas as pd

from powersmc_core.answers.extract import RULES
from powersmc_core.evaluation.problem_run import effective_rule
from powersmc_core.evaluation.runner import RULE_COLUMNS, canonical_columns

__all__ = [
    "CI_DIGITS",
    "Z95",
    "config_label",
    "format_pairs",
    "format_table",
    "mcnemar_exact",
    "paired_comparisons",
    "summary_table",
    "wilson_interval",
]

Z95 = 1.959963984540054
CI_DIGITS = 4  # decimals of ci_low / ci_high in the summary table


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (nan, nan) when n = 0."""
    if n <= 0:
        return math.nan, math.nan
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 (k = n) the bound is exactly 0 (1): centre and half cancel in exact
    # arithmetic, and in floats they leave a residue such as 5.6e-17.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


_SHORT = {"alpha": "α", "n_particles": "N", "mh_steps": "K", "max_new_tokens": "T"}


def config_label(method: str, config_json: str) -> str:
    """'smc α=4 N=16' from a row's method and config (seed and defaults left out)."""
    config = json.loads(config_json) if config_json else {}
    if "particles" in config:  # rows written before the rename
        config.setdefault("n_particles", config.pop("particles"))
    parts = [method]
    for name in ("alpha", "n_particles", "mh_steps"):
        if name in config and config[name] is not None:
            value = config[name]
            value = f"{value:g}" if isinstance(value, float) else value
            parts.append(f"{_SHORT[name]}={value}")
    if config.get("schedule") not in (None, "constant"):
        parts.append(str(config["schedule"]))
    return " ".join(parts)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b and c (see module)."""
    if min(b, c) < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))  # exact integers
    return min(1.0, 2 * tail / 2**n)


def _lines(df: pd.DataFrame, rules: Sequence[str]) -> Iterator[tuple[str, str, str, pd.DataFrame]]:
    """(method, config hash, rule, rows) for every line to show, in first-seen order."""
    for (method, chash), group in df.groupby(["method", "config_hash"], sort=False):
        shown = dict.fromkeys(effective_rule(str(method), r) for r in rules)
        for rule in shown:
            column = RULE_COLUMNS[rule][1]
            if column not in group:
                continue
            rows = group[group[column].notna()]  # rows from before the rule existed: left out
            if len(rows):
                yield str(method), str(chash), rule, rows


def _label(method: str, config_json: str, rule: str) -> str:
    if method == "bon" and rule == "majority-vote":
        # best-of-N's samples are N plain samples: this line is the self-consistency baseline
        return config_label("majority", config_json)
    label = config_label(method, config_json)
    return label if rule == "chosen" else f"{label} · {rule}"


def summary_table(df: pd.DataFrame, rules: Sequence[str] = RULES) -> pd.DataFrame:
    """One line per (method, config, rule): n, accuracy, CI, log p/token, latency and ratio.

    ``rules`` defaults to every answer rule (chosen, weighted vote, majority vote); a rule
    equal to another for a method is shown once. ci_low/ci_high are rounded to
    ``CI_DIGITS`` decimals. Likelihood, tokens and latency are those of the run (shared by
    its rule lines).
    """
    columns = [
        "method",
        "rule",
        "config",
        "n",
        "accuracy",
        "ci_low",
        "ci_high",
        "logp_per_token",
        "tokens",
        "latency_s",
        "latency_ratio",
        "alpha",
        "n_particles",
        "schedule",
        "config_hash",
    ]
    if df.empty:
        return pd.DataFrame(columns=columns)
    df = canonical_columns(df)
    base = df[df["method"] == "base"].groupby("problem_id")["latency_s"].mean()
    lines = []
    for method, chash, rule, group in _lines(df, rules):
        n, k = len(group), int(group[RULE_COLUMNS[rule][1]].astype(bool).sum())
        low, high = wilson_interval(k, n)
        shared = base.reindex(group["problem_id"].unique()).dropna()
        mine = group[group["problem_id"].isin(shared.index)]["latency_s"].mean()
        ratio = mine / shared.mean() if len(shared) and shared.mean() > 0 else math.nan
        lines.append(
            {
                "method": method,
                "rule": rule,
                "config": _label(method, group["config"].iloc[0], rule),
                "n": n,
                "accuracy": k / n,
                "ci_low": round(low, CI_DIGITS),
                "ci_high": round(high, CI_DIGITS),
                "logp_per_token": float(group["log_p_per_token"].mean()),
                "tokens": float(group["tokens"].mean()),
                "latency_s": float(group["latency_s"].mean()),
                "latency_ratio": float(ratio),
                "alpha": float(group["alpha"].iloc[0]),
                "n_particles": int(group["n_particles"].iloc[0]),
                "schedule": str(group["schedule"].iloc[0]),
                "config_hash": chash,
            }
        )
    return pd.DataFrame(lines, columns=columns)


def format_table(summary: pd.DataFrame) -> str:
    """Plain-text (Markdown) table of a summary, for the terminal and the docs."""
    header = "| method | n | accuracy (95% CI) | log p / token | tokens | latency (s) | × base |"
    rule = "|---|---:|---|---:|---:|---:|---:|"
    lines = [header, rule]
    for r in summary.itertuples(index=False):
        ratio = "—" if math.isnan(r.latency_ratio) else f"{r.latency_ratio:.1f}"
        lines.append(
            f"| {r.config} | {r.n} | {r.accuracy:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] "
            f"| {r.logp_per_token:.3f} | {r.tokens:.1f} | {r.latency_s:.2f} | {ratio} |"
        )
    return "\n".join(lines)


def paired_comparisons(df: pd.DataFrame, rules: Sequence[str] = ("chosen",)) -> pd.DataFrame:
    """Exact McNemar test between every two summary lines, on the problems both graded.

    Columns: first, second (line labels), n (shared problems), first_only (b), second_only
    (c), p_value. One row per unordered pair, in the order of ``summary_table``.
    """
    columns = ["first", "second", "n", "first_only", "second_only", "p_value"]
    graded = []
    for method, _, rule, group in _lines(df, rules):
        right = group.set_index("problem_id")[RULE_COLUMNS[rule][1]].astype(bool)
        graded.append((_label(method, group["config"].iloc[0], rule), right))
    out = []
    for i, (label_a, a) in enumerate(graded):
        for label_b, b in graded[i + 1 :]:
            shared = a.index.intersection(b.index)
            x, y = a[shared], b[shared]
            only_a, only_b = int((x & ~y).sum()), int((~x & y).sum())
            out.append(
                [label_a, label_b, len(shared), only_a, only_b, mcnemar_exact(only_a, only_b)]
            )
    return pd.DataFrame(out, columns=columns)


def format_pairs(pairs: pd.DataFrame) -> str:
    """Markdown table of ``paired_comparisons``: b / c and the exact McNemar p-value."""
    lines = [
        "| first | second | problems | only first right | only second right | McNemar p |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in pairs.itertuples(index=False):
        lines.append(
            f"| {r.first} | {r.second} | {r.n} | {r.first_only} | {r.second_only} "
            f"| {r.p_value:.3g} |"
        )
    return "\n".join(lines)
