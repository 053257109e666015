"""Bias of rollout power sampling (approximate) against enumeration: the table in
docs/rollout_power.md. Not a test; run ``.venv/bin/python scripts/rollout_bias.py``.

The sampler's law is computed, not sampled: each step draws from pi_hat(.|prefix) with
fresh rollouts, so P(y) = prod_t E[pi_hat(y_t | y_<t)], and each mean is estimated from
``ROWS`` independent estimates (``mean_conditional``). Reported: TV(P, pi_alpha) and, on
the pivotal tables (``ToyLM.pivotal(i)``, the arena's ``toy-pivotal:i``), P(first token =
r) − pi_alpha(first token = r) for the rare first token r (``model.pivot_token``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from powersmc_core.models.toy import ToyLM
from powersmc_core.samplers.rollout_power import RolloutPowerSampler, mean_conditional
from powersmc_core.theory.exact import (
    enumerate_sequences,
    power_distribution,
    total_variation,
)

ALPHA, T, ROWS = 4.0, 3, 2000


def sampler_law(model: ToyLM, table, **kwargs) -> torch.Tensor:
    """P(y) = prod_t E[pi_hat(y_t | y_<t)] over the table's completions."""
    cache: dict[tuple[int, ...], torch.Tensor] = {}
    out = torch.ones(len(table.sequences), dtype=torch.float64)
    for i, emitted in enumerate(table.emitted):
        for t, token in enumerate(emitted):
            prefix = tuple(emitted[:t])
            if prefix not in cache:
                cache[prefix], _ = mean_conditional(
                    model, list(prefix), T - t, ROWS, alpha=ALPHA, seed=len(cache), **kwargs
                )
            out[i] *= cache[prefix][token]
    return out


def forwards_per_sample(model: ToyLM, **kwargs) -> float:
    result = RolloutPowerSampler(
        model, alpha=ALPHA, n_samples=200, max_new_tokens=T, track_text=False, **kwargs
    ).run([])
    return result.extras["token_forwards"] / 200


SETTINGS = [  # (K, M, H, jackknife)
    (8, 2, 3, False),
    (8, 2, 3, True),
    (8, 4, 3, False),
    (8, 4, 3, True),
    (8, 16, 3, True),
    (8, 16, 1, True),
    (8, 4, 0, True),
    (2, 16, 3, True),
]


def main() -> None:
    tables = [
        (f"random(V=5,L=4,seed={s},sharpness=1)", ToyLM.random(5, 4, seed=s, sharpness=1.0), False)
        for s in range(3)
    ]
    tables += [(f"toy-pivotal:{i}", ToyLM.pivotal(i), True) for i in range(4)]
    print(
        "| table | K | M | H | jackknife | forwards/sample | TV to pi_alpha | rare-branch error |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, model, has_rare in tables:
        table = enumerate_sequences(model, [], T)
        exact = power_distribution(table, ALPHA)
        pivot = model.pivot_token if has_rare else -1
        rare = torch.tensor([bool(s) and s[0] == pivot for s in table.sequences])
        for k, m, h, jack in SETTINGS:
            kwargs = dict(candidates=k, rollouts=m, depth=h, jackknife=jack)
            law = sampler_law(model, table, **kwargs)
            tv = total_variation(law, exact)
            err = f"{float(law[rare].sum() - exact[rare].sum()):+.3f}" if has_rare else "—"
            if has_rare:
                err += f" (of {float(exact[rare].sum()):.2f})"
            fw = forwards_per_sample(model, **kwargs)
            print(
                f"| {name} | {k} | {m} | {h} | {'yes' if jack else 'no'} | {fw:.0f} "
                f"| {tv:.3f} | {err} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
