"""Diagnostics on a real model: Rényi entropies along completions and ESS drops.

With tau = 1/alpha and no bridging step, log G_i = (1 - alpha)·H_alpha(p(.|prefix_i)), so the
spread of H_alpha across particles governs how fast the ESS falls.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.records import StepRecord
from powersmc_core.engine.run import PowerSMC
from powersmc_core.models.base import LanguageModel

__all__ = ["next_token_path", "next_token_rows", "renyi_diagnostics", "resampling_counts"]


def next_token_rows(
    model: LanguageModel, prompt: Sequence[int], n_tokens: int, seed: int = 0
) -> torch.Tensor:
    """Next-token log-prob rows (n, V), float64, along one continuation sampled at T = 1.

    Real next-token distributions for the optimal-proposal sweep; stops early at EOS.
    """
    return next_token_path(model, prompt, n_tokens, seed)[0]


def next_token_path(
    model: LanguageModel, prompt: Sequence[int], n_tokens: int, seed: int = 0
) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """``next_token_rows`` and the prefix (tokens after ``prompt``) each row conditions on.

    Row k is p(. | prompt + prefixes[k]); prefixes[0] = (), prefixes[k] = the k tokens drawn
    before it, so a chart can name its rows by what they mean.
    """
    generator = torch.Generator().manual_seed(seed)
    state, logp = model.start(list(prompt), 1)
    rows: list[torch.Tensor] = []
    prefixes: list[tuple[int, ...]] = []
    drawn: tuple[int, ...] = ()
    one = torch.ones(1, dtype=torch.bool, device=model.device)
    eos = set(model.eos_token_ids)
    for _ in range(n_tokens):
        row = logp[0].to(torch.float64).cpu()
        rows.append(row)
        prefixes.append(drawn)
        token = int(torch.multinomial(row.exp(), 1, generator=generator))
        if token in eos:
            break
        drawn = (*drawn, token)
        state, logp = model.advance(state, torch.tensor([token], device=model.device), one)
    return torch.stack(rows), prefixes


def renyi_diagnostics(records: Sequence[StepRecord]) -> pd.DataFrame:
    """Per step: the spread of H_alpha_t(p(.|prefix_i)) across particles and the ESS drop.

    Columns: step, alpha_t, n_active, ess_fraction, resampled, renyi_mean, renyi_std,
    renyi_wstd (std of H under the weights W_{t-1} the step started from), log_inc_wstd,
    ess_drop = log(ESS_t / ESS_{t-1}^+), ESS^+ = 1/Σ(W_{t-1}^+)² of the weights the step started
    from (N after a resampling that resets them, less after chopthin, which keeps them unequal).
    With tau = 1/alpha and no bridging step log G_i = (1 - alpha)·H_alpha,i, so the ESS drop is
    governed by (alpha - 1)^2 Var_W(H_alpha): -log(ESS_t/ESS_{t-1}) ≈ that for small spreads.
    """
    rows = []
    for rec in records:
        n = rec.n_particles
        renyi = np.asarray(rec.renyi, dtype=np.float64)
        inc = np.asarray(rec.log_increment, dtype=np.float64)
        active = ~np.isnan(renyi)
        # W_{t-1} ∝ exp(log W_t - log G_t): the record holds both.
        prior = np.asarray(rec.log_weights, dtype=np.float64) - inc
        prior = np.exp(prior - prior.max())
        prior /= prior.sum()
        wa = prior[active] / prior[active].sum() if active.any() else prior[active]
        h = renyi[active]
        before = 1.0 / float(prior @ prior)
        rows.append(
            {
                "step": rec.step,
                "alpha_t": rec.alpha,
                "n_active": int(active.sum()),
                "ess_fraction": rec.ess / n,
                "resampled": rec.resampled,
                "renyi_mean": float(h.mean()) if h.size else math.nan,
                "renyi_std": float(h.std()) if h.size else math.nan,
                "renyi_wstd": float(np.sqrt(wa @ (h - wa @ h) ** 2)) if h.size else math.nan,
                "log_inc_wstd": float(np.sqrt(prior @ (inc - prior @ inc) ** 2)),
                "ess_drop": math.log(rec.ess / before),
            }
        )
    return pd.DataFrame(rows)


def resampling_counts(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    alpha: float,
    schedules: Iterable[str] = ("constant", "linear", "adaptive"),
    seeds: Iterable[int] = (0,),
    **config_kwargs,
) -> pd.DataFrame:
    """How many times each bridging schedule resamples, per prompt and seed.

    Columns: schedule, prompt, seed, n_resamples, n_steps, min_ess_fraction, mean_renyi_std.
    """
    rows = []
    for schedule in schedules:
        for p_index, prompt in enumerate(prompts):
            for seed in seeds:
                cfg = SMCConfig(alpha=alpha, schedule=schedule, seed=seed, **config_kwargs)
                records = list(PowerSMC(model, cfg, track_text=False).stream(prompt))
                diag = renyi_diagnostics(records)
                rows.append(
                    {
                        "schedule": schedule,
                        "prompt": p_index,
                        "seed": seed,
                        "n_resamples": int(diag["resampled"].sum()),
                        "n_steps": len(records),
                        "min_ess_fraction": float(diag["ess_fraction"].min()),
                        "mean_renyi_std": float(diag["renyi_std"].mean()),
                    }
                )
    return pd.DataFrame(rows)
