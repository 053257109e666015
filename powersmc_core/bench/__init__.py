"""Latency benchmark: what Power-SMC costs next to plain decoding, side by side.

``python -m powersmc_core bench`` times, in one process, on the same model, prompt
and number of new tokens T (EOS suppressed, so every method decodes exactly T):

1. base      — the registry's method ``base`` with one sample (``TemperatureSampling``
               at T = 1): one sequence, plain ancestral decoding (the everyday cost);
2. limit     — the bench's bare decode loop: N sequences in one batch and nothing
               else, start + T × (sample, advance). The physical floor for N
               particles on this backend;
3. smc       — ``PowerSMC`` with N particles, records consumed (the honest cost);
4. mh        — MH power sampling with the Karan & Du defaults (alpha 4, block
               size T/16, 10 MH steps per block), batch 1 on the same backend;
5. reference — optional: ``smc_power_sample_memopt`` from a local copy of the
               public Power-SMC reference code (``--reference-module FILE``);
6. generate / generate1 — Hugging Face ``model.generate`` sampling N sequences
               (and one), ``min_new_tokens = T`` banning EOS, with the static cache
               (compiled by transformers on CUDA) whenever ours is static: what the
               library itself reaches, for comparison (transformers models only).

Rows base, smc and mh (and any method registered with ``bench=True``) are built by
the one method registry (``samplers.registry``); limit and the ``--smc-variant`` rows
are the bench's own.

On accelerators the SMC's records are read back every ``--stream-every`` steps
(default 16 there, 1 on CPU): no host synchronisation per token in between.

``--compare-backends`` instead times ``limit`` and ``smc`` on torch and llama.cpp
side by side (``bench/backends.py``): ``smc_speedup_llamacpp`` and each backend's
smc over its own limit.

Each method runs ``repeats`` times; the order rotates between repeats (machines
are noisy and drift) and medians are reported. The headline ratios are
smc_over_limit = smc_s / limit_s (bookkeeping overhead) and mh_s / smc_s.
"""

from powersmc_core.bench.backends import COMPARE_KEYS, compare_backends, format_compare_table
from powersmc_core.bench.command import add_arguments, main, parse_variant, run_bench
from powersmc_core.bench.summary import (
    DEFAULT_PROMPT,
    METHODS,
    REQUIRED_KEYS,
    BenchResult,
    BenchSettings,
    format_table,
    summarise,
    variant_name,
)
from powersmc_core.bench.timing import (
    generate_method,
    load_reference,
    make_methods,
    reference_method,
    time_methods,
)
from powersmc_core.bench.wrappers import (
    Clock,
    LimitRun,
    SuppressEOS,
    Timed,
    clocked,
    decode_limit,
    synchronise,
)

__all__ = [
    "COMPARE_KEYS",
    "DEFAULT_PROMPT",
    "METHODS",
    "REQUIRED_KEYS",
    "BenchResult",
    "BenchSettings",
    "Clock",
    "LimitRun",
    "SuppressEOS",
    "Timed",
    "add_arguments",
    "clocked",
    "compare_backends",
    "decode_limit",
    "format_compare_table",
    "format_table",
    "generate_method",
    "load_reference",
    "main",
    "make_methods",
    "parse_variant",
    "reference_method",
    "run_bench",
    "summarise",
    "synchronise",
    "time_methods",
    "variant_name",
]
