"""Benchmark settings, the JSON summary (medians and ratios) and the printed table.

Pure bookkeeping: no model, no timing. ``summarise`` turns seconds per repeat into
the JSON whose keys ``REQUIRED_KEYS`` lists; ``format_table`` prints it.
"""

from __future__ import annotations

import statistics
from dataclasses import InitVar, dataclass
from typing import Any

from powersmc_core.engine.config import SMCConfig

__all__ = [
    "DEFAULT_PROMPT",
    "METHODS",
    "REQUIRED_KEYS",
    "BenchResult",
    "BenchSettings",
    "format_table",
    "summarise",
    "variant_name",
]

# Rows with their own documented keys ({row}_s): registry methods base (one sample, T = 1),
# smc and mh, and the bare decode loop limit. Every row timed is in times_s.
METHODS = ("base", "limit", "smc", "mh")
DEFAULT_PROMPT = "Explain in a few sentences why the sky is blue."
REQUIRED_KEYS = (
    "base_s",
    "limit_s",
    "smc_s",
    "mh_s",
    "smc_over_limit",
    "smc_over_baseline",
    "mh_over_baseline",
    "device",
    "model",
    "n_particles",
    "new_tokens",
    "repeats",
)


@dataclass(frozen=True)
class BenchSettings:
    """One benchmark configuration (everything the JSON needs to be reproduced)."""

    n_particles: int = 8
    max_new_tokens: int = 64
    repeats: int = 3
    alpha: float = 4.0
    mh_steps: int = 10
    mh_block_size: int | None = None  # None: max(1, max_new_tokens // 16) (Karan & Du)
    warmup: bool = True
    seed: int = 0
    stream_every: int = 1
    smc_block_size: int = 1  # SMC considers resampling every this many steps
    # More SMC rows, timed side by side: (block_size, stream_every) each, named smc_b{B}_k{K}.
    smc_variants: tuple[tuple[int, int], ...] = ()
    # The old name of ``max_new_tokens``, accepted by keyword only for existing callers.
    new_tokens: InitVar[int | None] = None

    def __post_init__(self, new_tokens: int | None) -> None:
        if new_tokens is not None:
            object.__setattr__(self, "max_new_tokens", new_tokens)
        checks = (("n_particles", 1), ("max_new_tokens", 1), ("repeats", 1), ("mh_steps", 0))
        for name, low in (*checks, ("stream_every", 1), ("smc_block_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.mh_block_size is not None and self.mh_block_size < 1:
            raise ValueError(f"mh_block_size must be >= 1, got {self.mh_block_size}")
        seen = {(self.smc_block_size, self.stream_every)}
        for block, every in self.smc_variants:
            if min(block, every) < 1:
                raise ValueError(f"SMC variant {block}:{every}: both must be >= 1")
            if (block, every) in seen:
                raise ValueError(f"SMC variant {block}:{every} is already timed")
            seen.add((block, every))
        SMCConfig(alpha=self.alpha, n_particles=self.n_particles, seed=self.seed)

    @property
    def block_size(self) -> int:
        return self.mh_block_size or max(1, self.max_new_tokens // 16)


@dataclass(frozen=True)
class BenchResult:
    times: dict[str, list[float]]  # seconds per repeat, in repeat order
    settings: BenchSettings
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return summarise(self.times, self.settings, self.meta)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _per_step_ms(seconds: float | None, steps: int) -> float | None:
    return None if seconds is None else 1000.0 * seconds / steps


def summarise(
    times: dict[str, list[float]],
    settings: BenchSettings,
    meta: dict[str, Any],
    inside: dict[str, list[float]] | None = None,
    forwards: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Medians and ratios: x_over_y = median(x) / median(y); ms_per_step = 1000·smc_s / T.

    With ``forwards`` (token forwards of one full-length run per row, the registry's
    accounting: prompt once, rollouts included): forwards_per_token[m] = forwards[m] / T,
    the compute beside the time per token (rows whose runs report none are absent).

    The ratios to the base row keep their documented names: smc_over_baseline =
    smc_s / base_s and mh_over_baseline = mh_s / base_s (a variant's over_baseline too).

    With model-call times (``inside``, CPU): outside_model_ms_per_step[m] =
    1000·median(total − inside)/T, and smc_bookkeeping_over_limit = (outside[smc] −
    outside[limit])·T / 1000 / limit_s, the share SMC adds to the limit's time
    whatever the (noisy) forward passes cost — the noise-robust form of smc_over_limit − 1.
    """
    medians = {m: statistics.median(ts) for m, ts in times.items() if ts}
    t = settings.max_new_tokens
    outside = {
        m: 1000.0 * statistics.median(a - b for a, b in zip(times[m], ins, strict=True)) / t
        for m, ins in (inside or {}).items()
        if ins
    }
    bookkeeping = None
    if "smc" in outside and "limit" in outside and medians.get("limit"):
        bookkeeping = (outside["smc"] - outside["limit"]) * t / 1000.0 / medians["limit"]
    smc, limit, base = medians.get("smc"), medians.get("limit"), medians.get("base")
    mh, ref = medians.get("mh"), medians.get("reference")
    generate = {
        f"{m}_{key}": value
        for m in ("generate", "generate1")
        if medians.get(m) is not None
        for key, value in (("s", medians[m]), ("ms_per_step", _per_step_ms(medians[m], t)))
    }
    variants = {}
    for block, every in settings.smc_variants:
        median = medians.get(variant_name(block, every))
        variants[variant_name(block, every)] = {
            "block_size": block,
            "stream_every": every,
            "s": median,
            "ms_per_step": _per_step_ms(median, t),
            "over_smc": _ratio(median, smc),
            "over_baseline": _ratio(median, base),
        }
    return {
        **{f"{m}_s": medians.get(m) for m in METHODS},  # None for a skipped method
        **({"reference_s": ref} if ref is not None else {}),
        **generate,
        "smc_over_limit": _ratio(smc, limit),
        "smc_over_baseline": _ratio(smc, base),
        "mh_over_baseline": _ratio(mh, base),
        "mh_over_smc": _ratio(mh, smc),
        "reference_over_smc": _ratio(ref, smc),
        "smc_over_generate": _ratio(smc, medians.get("generate")),
        "ms_per_step": _per_step_ms(smc, t),
        "base_ms_per_step": _per_step_ms(base, t),
        "limit_ms_per_step": _per_step_ms(limit, t),
        "n_particles": settings.n_particles,
        "new_tokens": settings.max_new_tokens,  # the documented JSON key
        "repeats": settings.repeats,
        "alpha": settings.alpha,
        "mh_steps": settings.mh_steps,
        "mh_block_size": settings.block_size,
        "seed": settings.seed,
        "stream_every": settings.stream_every,
        "smc_block_size": settings.smc_block_size,
        "smc_variants": variants,
        "times_s": {m: list(ts) for m, ts in times.items()},
        "model_s": {m: list(ins) for m, ins in (inside or {}).items()} or None,
        "outside_model_ms_per_step": outside or None,
        "smc_bookkeeping_over_limit": bookkeeping,
        "token_forwards": dict(forwards) if forwards else None,
        "forwards_per_token": {m: f / t for m, f in forwards.items()} if forwards else None,
        **meta,
    }


def variant_name(block: int, every: int) -> str:
    """The row of an SMC variant: smc_b{block_size}_k{stream_every}."""
    return f"smc_b{block}_k{every}"


def format_table(summary: dict[str, Any]) -> str:
    """Median seconds per method, ms and token forwards per token (fwd/tok: the rows that
    count them), with ratios to the base row and the limit row."""
    times = summary["times_s"]
    base, limit = summary.get("base_s"), summary.get("limit_s")
    t = summary["new_tokens"]
    width = max(10, *(len(name) for name in times))  # variant rows (smc_b16_k16) are longer
    lines = [
        f"model {summary['model']} · {summary['device']} · N={summary['n_particles']} · "
        f"T={t} new tokens · {summary['repeats']} repeats (medians)",
        f"{'method':<{width}} {'median s':>9} {'min s':>8} {'max s':>8} "
        f"{'ms/step':>8} {'fwd/tok':>8} {'× base':>8} {'× limit':>8}",
    ]
    per_token = summary.get("forwards_per_token") or {}
    for name, runs in times.items():
        med = statistics.median(runs)
        xb = "" if not base else f"{med / base:8.2f}"
        xl = "" if not limit else f"{med / limit:8.2f}"
        fwd = "" if name not in per_token else f"{per_token[name]:8.1f}"
        lines.append(
            f"{name:<{width}} {med:9.3f} {min(runs):8.3f} {max(runs):8.3f} "
            f"{1000 * med / t:8.1f} {fwd:>8} {xb:>8} {xl:>8}"
        )
    smc_limit, mh_smc = summary.get("smc_over_limit"), summary.get("mh_over_smc")
    if smc_limit is not None:
        lines.append(f"smc_over_limit = {smc_limit:.3f}  (target <= 1.10 on CPU)")
    over_generate = summary.get("smc_over_generate")
    if over_generate is not None:
        lines.append(f"smc_over_generate = {over_generate:.3f}  (Hugging Face generate, N rows)")
    if mh_smc is not None:
        lines.append(
            f"mh_over_baseline / smc_over_baseline = mh_s / smc_s = {mh_smc:.2f}  (target >= 3)"
        )
    breaks = summary.get("compile_graph_breaks")
    if breaks:
        lines.append(f"warning: {breaks} torch.compile graph breaks in this run (split graphs)")
    return "\n".join(lines)
