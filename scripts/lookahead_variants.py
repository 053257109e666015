"""Look-ahead SMC variants against Power-SMC at equal forwards (docs/arena.md's variant table).

Registers each variant (K = V, its M and H) as an extra method around ``run_arena`` and
prints, per suite, TV (random) or rare-branch error (pivotal) at Power-SMC N = 32's forwards
with s.e., the pivotal error at 4x, and each line's forwards at N = 32. About 10 minutes
on a loaded 2-core VM:

    nice -n 10 .venv/bin/python scripts/lookahead_variants.py [RUNS]
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this tree, not an install

from powersmc_core.engine.lookahead import LookaheadConfig
from powersmc_core.samplers import registry
from powersmc_core.samplers.lookahead import LookaheadSMC
from powersmc_core.theory.arena import ArenaSettings, run_arena

VARIANTS = {  # name -> LookaheadConfig fields besides K = V
    "la_m4h4": dict(m=4, h=4),
    "la_m1h4": dict(m=1, h=4),
    "la_m1h2": dict(m=1, h=2),
    "la_m2h2": dict(m=2, h=2),
    "la_h1": dict(m=1, h=1),
}


def register_variants() -> None:
    base = registry.METHODS["lookahead"]
    for name, fields in VARIANTS.items():

        def build(model, config, *, stop, stream_every, track_text, _fields=fields, **_):
            look = LookaheadConfig(k=min(model.vocab_size, 64), **_fields)
            return LookaheadSMC(
                model, config, look, stop=stop, track_text=track_text, stream_every=stream_every
            )

        registry.register(dataclasses.replace(base, name=name, build=build))


def main(runs: int) -> None:
    register_variants()
    settings = ArenaSettings(
        suites=("pivotal", "random"),
        methods=("smc", *VARIANTS),
        schedules=("constant",),
        runs=runs,
        budgets=(4, 8, 16, 32, 64, 128),
    )
    result = run_arena(settings)
    matched = result.matched()
    pd.set_option("display.width", 200)
    at = {f: matched[matched["factor"] == f] for f in (1.0, 4.0)}
    for suite, col, se in (
        ("random", "tv", "tv_se"),
        ("pivotal", "rare_mass_error", "rare_mass_se"),
    ):
        df = at[1.0][at[1.0]["suite"] == suite]
        print(f"{suite}: {col} at 1x (then its s.e.)")
        print(df.pivot(index="model", columns="line", values=col).round(4).to_string())
        print(df.pivot(index="model", columns="line", values=se).round(4).to_string())
    four = at[4.0][at[4.0]["suite"] == "pivotal"]
    print("pivotal: rare_mass_error at 4x")
    print(four.pivot(index="model", columns="line", values="rare_mass_error").round(4).to_string())
    frame = result.frame[result.frame["budget"] == 32]
    print("forwards at N = 32")
    print(frame.pivot_table(index="model", columns="line", values="forwards").round(0).to_string())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
