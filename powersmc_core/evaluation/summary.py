"""Per-(method, config) summary: accuracy with a Wilson 95% interval, likelihood, latency.

Wilson score interval for k successes in n trials, z = 1.96:
    centre = (p + z²/2n) / (1 + z²/n),   half = z·sqrt(p(1−p)/n + z²/4n²) / (1 + z²/n)
It stays inside [0, 1] and is sensible at p = 0 or 1, where the normal interval collapses.
The latency ratio divides a row group's mean latency by the mean latency of ``base`` over
the same problems (NaN when base was not run).
"""

from __future__ import annotations

import json
import math

import pandas as pd

__all__ = ["Z95", "config_label", "format_table", "summary_table", "wilson_interval"]

Z95 = 1.959963984540054


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
    return max(0.0, centre - half), min(1.0, centre + half)


_SHORT = {"alpha": "α", "particles": "N", "mh_steps": "K", "max_new_tokens": "T"}


def config_label(method: str, config_json: str) -> str:
    """'smc α=4 N=16' from a row's method and config (seed and defaults left out)."""
    config = json.loads(config_json) if config_json else {}
    parts = [method]
    for name in ("alpha", "particles", "mh_steps"):
        if name in config and config[name] is not None:
            value = config[name]
            value = f"{value:g}" if isinstance(value, float) else value
            parts.append(f"{_SHORT[name]}={value}")
    if config.get("schedule") not in (None, "constant"):
        parts.append(str(config["schedule"]))
    return " ".join(parts)


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """One line per (method, config): n, accuracy, CI, mean log p/token, latency and ratio."""
    columns = [
        "method",
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
        "particles",
        "schedule",
        "config_hash",
    ]
    if df.empty:
        return pd.DataFrame(columns=columns)
    base = df[df["method"] == "base"].groupby("problem_id")["latency_s"].mean()
    lines = []
    for (method, chash), group in df.groupby(["method", "config_hash"], sort=False):
        n, k = len(group), int(group["correct"].sum())
        low, high = wilson_interval(k, n)
        shared = base.reindex(group["problem_id"].unique()).dropna()
        mine = group[group["problem_id"].isin(shared.index)]["latency_s"].mean()
        ratio = mine / shared.mean() if len(shared) and shared.mean() > 0 else math.nan
        lines.append(
            {
                "method": method,
                "config": config_label(method, group["config"].iloc[0]),
                "n": n,
                "accuracy": k / n,
                "ci_low": low,
                "ci_high": high,
                "logp_per_token": float(group["log_p_per_token"].mean()),
                "tokens": float(group["tokens"].mean()),
                "latency_s": float(group["latency_s"].mean()),
                "latency_ratio": float(ratio),
                "alpha": float(group["alpha"].iloc[0]),
                "particles": int(group["particles"].iloc[0]),
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
