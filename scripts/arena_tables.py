"""The arena's README tables (docs/arena_readme_table.md) from ``powersmc arena`` outputs.

    .venv/bin/python scripts/arena_tables.py OUT [OUT ...] > docs/arena_readme_table.md

Each OUT is an ``--out`` folder (``arena.csv``, ``arena_matched.csv``); several folders
(e.g. one per suite, run in parallel) are concatenated. Printed, in Markdown:

(a) pivotal tables: the rare-branch mass error |E[mass behind r] − pi_alpha(r)| ± s.e. of
    every line at 1x and 4x Power-SMC N = 32's forwards (``theory.arena.matched_forwards``);
(b) random tables: TV(law of one run, pi_alpha) ± s.e. of every line at 1x and 4x;
(c) rollout power sampling's bias: TV of the runs' mean law (the part more runs cannot
    remove, beside exact Power-SMC's with the adaptive schedule at the same N) and, on the
    pivotal tables, the signed rare-branch bias E[mass] − pi_alpha(r) ± s.e.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

# Lines shown, in order (others present in the CSVs follow).
ORDER = (
    "lookahead·constant",
    "lookahead·linear",
    "lookahead·adaptive",
    "smc·constant",
    "smc·linear",
    "smc·adaptive",
    "rollout",
    "mh",
    "bon",
    "base",
    "lowtemp",
    "greedy",
)


def cell(value: float, se: float, clamped: bool = False) -> str:
    """ "0.012 ± 0.004" (s.e. over runs); "—" outside a line's forwards; * when clamped."""
    if not math.isfinite(value):
        return "—"
    mark = "*" if clamped else ""
    digits = 4 if abs(value) < 0.01 else 3  # small TVs keep two significant digits
    if not math.isfinite(se):
        return f"{value:.{digits}f}{mark}"
    return f"{value:.{digits}f} ± {se:.{digits}f}{mark}"


def lines_of(frame: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(frame["line"]))
    return [x for x in ORDER if x in present] + [x for x in present if x not in ORDER]


def matched_table(matched: pd.DataFrame, suite: str, value: str, se: str) -> str:
    """One row per toy and factor, one column per line: ``value`` ± ``se``."""
    df = matched[matched["suite"] == suite]
    lines = lines_of(df)
    head = ["table", "× ref", "forwards", *lines]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, factor), group in df.groupby(["model", "factor"], sort=False):
        by_line = {row["line"]: row for _, row in group.iterrows()}
        cells = [model, f"{factor:g}", f"{group['forwards'].iloc[0]:.0f}"]
        for line in lines:
            row = by_line.get(line)
            cells.append(
                "—" if row is None else cell(row[value], row[se], bool(row.get("clamped", False)))
            )
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def rollout_bias(frame: pd.DataFrame) -> str:
    """Rollout's TV of the mean law and signed rare-branch bias per toy at its largest N."""
    head = [
        "table",
        "N",
        "rollout TV of mean law",
        "Power-SMC (adaptive) TV of mean law",
        "rollout E[rare mass] − π_α(r)",
        "Power-SMC E[rare mass] − π_α(r)",
    ]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, toy in frame.groupby("model", sort=False):
        roll = toy[toy["line"] == "rollout"]
        smc = toy[toy["line"] == "smc·adaptive"]
        if roll.empty:
            continue
        n = int(roll["budget"].max())
        r = roll[roll["budget"] == n].iloc[0]
        s = smc[smc["budget"] == n].iloc[0] if (smc["budget"] == n).any() else None

        def signed(row) -> str:
            if row is None or not math.isfinite(row["rare_mass_exact"]):
                return "—"
            return f"{row['rare_mass'] - row['rare_mass_exact']:+.3f} ± {row['rare_mass_se']:.3f}"

        cells = [
            model,
            str(n),
            f"{r['tv_of_mean']:.3f}",
            "—" if s is None else f"{s['tv_of_mean']:.3f}",
            signed(r),
            signed(s),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(folders: list[str]) -> None:
    frame = pd.concat([pd.read_csv(Path(f) / "arena.csv") for f in folders], ignore_index=True)
    matched = pd.concat(
        [pd.read_csv(Path(f) / "arena_matched.csv") for f in folders], ignore_index=True
    )
    runs = int(frame["runs"].iloc[0])
    alpha = float(frame["alpha"].iloc[0])
    print(f"alpha = {alpha:g}, {runs} runs per point; ± one standard error over the runs; ")
    print("* = read at the line's nearest budget (the target lies up to 28% beyond it).\n")
    if (matched["suite"] == "pivotal").any():
        print("**(a) Pivotal tables: rare-branch mass error at 1x and 4x Power-SMC N = 32's")
        print("forwards** (|E[mass behind r] − π_α(r)|, lower is better)\n")
        print(matched_table(matched, "pivotal", "rare_mass_error", "rare_mass_se"))
        print()
    if (matched["suite"] == "random").any():
        print("**(b) Random tables: TV(one run's law, π_α) at 1x and 4x Power-SMC N = 32's")
        print("forwards** (lower is better)\n")
        print(matched_table(matched, "random", "tv", "tv_se"))
        print()
    if (frame["line"] == "rollout").any():
        print("**(c) Rollout power sampling's bias** at its largest N (K = M = H = 8): the TV")
        print("of the mean of the runs' laws, which more runs do not remove for an approximate")
        print("method, beside exact Power-SMC's (adaptive; finite-N bias plus noise)\n")
        print(rollout_bias(frame))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
