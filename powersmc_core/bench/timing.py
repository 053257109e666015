"""The timed methods: name -> fn(max_new_tokens, seed), and the loop that times them.

``make_methods`` builds the registry's rows (base, smc, mh and any later method with
``bench=True``), the bare decode loop ``limit`` and the ``--smc-variant`` rows over one
EOS-suppressed model; ``reference_method`` and ``generate_method`` add the
public reference implementation and Hugging Face ``generate``. ``time_methods`` runs
each ``repeats`` times, rotating the order every repeat, and reports seconds.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from powersmc_core.bench.summary import BenchSettings, variant_name
from powersmc_core.bench.wrappers import Clock, decode_limit, synchronise
from powersmc_core.engine.config import SMCConfig
from powersmc_core.engine.run import PowerSMC
from powersmc_core.models.base import LanguageModel
from powersmc_core.samplers.registry import METHODS, make_sampler

__all__ = [
    "generate_method",
    "load_reference",
    "make_methods",
    "reference_method",
    "time_methods",
]


def make_methods(
    model: LanguageModel,
    prompt: Sequence[int],
    settings: BenchSettings,
    reference: Callable[[int, int], Any] | None = None,
    single: LanguageModel | None = None,
) -> dict[str, Callable[[int, int], Any]]:
    """name -> fn(max_new_tokens, seed); both models must already suppress EOS.

    The method rows are the registry's samplers (``samplers.registry.METHODS``, those with
    ``bench=True``: base at one sample, smc, mh and any method registered later), built
    as ``make_sampler`` builds them, without text tracking. The bench's own rows: the bare
    decode loop ``limit`` (SMC's draw at tau = 1/alpha and forwards, nothing else) and the
    ``--smc-variant`` rows. ``model`` serves the methods
    that decode one growing batch (a static cache fits them) and limit; ``single``
    (default: the same) serves those that restart from new prefixes (MH, which on CUDA
    uses the plain dynamic cache a static one cannot give).
    """
    n, alpha = settings.n_particles, settings.alpha
    single = model if single is None else single

    def registry_row(name: str) -> Callable[[int, int], Any]:
        spec = METHODS[name]

        def run(t: int, seed: int) -> Any:
            # The MH block: the settings' own at the full length, else T/16 (Karan & Du).
            block = settings.block_size if t == settings.max_new_tokens else max(1, t // 16)
            config = SMCConfig(
                alpha=alpha,
                n_particles=n,
                max_new_tokens=t,
                seed=seed,
                block_size=settings.smc_block_size,
            )
            sampler = make_sampler(
                name,
                model if spec.static_cache else single,
                config,
                n_particles=1,  # base: one sample, the everyday cost
                mh_steps=settings.mh_steps,
                mh_block_size=block,
                stream_every=settings.stream_every if spec.batches else 1,
                track_text=False,
            )
            return sampler.run(prompt)

        return run

    def smc_with(block: int, every: int) -> Callable[[int, int], Any]:
        def smc(t: int, seed: int) -> Any:
            config = SMCConfig(
                alpha=alpha, n_particles=n, max_new_tokens=t, seed=seed, block_size=block
            )
            return PowerSMC(model, config, track_text=False, stream_every=every).run(prompt)

        return smc

    def limit(t: int, seed: int) -> Any:
        return decode_limit(model, prompt, n, t, seed, alpha=alpha)

    names = [name for name, spec in METHODS.items() if spec.bench]
    methods: dict[str, Callable[[int, int], Any]] = {}
    for name in names[:1]:  # the first row (base) leads, then limit, as the table reads
        methods[name] = registry_row(name)
    methods["limit"] = limit
    for name in names[1:]:
        methods[name] = registry_row(name)
    for block, every in settings.smc_variants:
        methods[variant_name(block, every)] = smc_with(block, every)
    if reference is not None:
        methods["reference"] = reference
    return methods


def time_methods(
    methods: dict[str, Callable[[int, int], Any]],
    settings: BenchSettings,
    device: torch.device,
    progress: Callable[[str], None] | None = None,
    clock: Clock | None = None,
    warmup_tokens: int | None = None,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Run every method ``repeats`` times, rotating the order each repeat.

    Returns (seconds per run, seconds inside the model per run) by method; the
    second is empty unless a ``clock`` fed by ``Timed`` wrappers is given. The
    warm-up decodes ``warmup_tokens`` (default min(T, 4)); compiled paths need the
    full T, since their cache shapes depend on it.
    """
    names = list(methods)
    if settings.warmup:
        # One untimed pass each: lazy initialisation, allocator growth, compilation.
        tokens = warmup_tokens or min(settings.max_new_tokens, 4)
        for name in names:
            if progress is not None:
                progress(f"warm-up: {name}")
            methods[name](tokens, settings.seed)
        synchronise(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    inside: dict[str, list[float]] = {name: [] for name in names} if clock is not None else {}
    for r in range(settings.repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            if progress is not None:
                progress(f"repeat {r + 1}/{settings.repeats}: {name}")
            if clock is not None:
                clock.seconds = 0.0
            synchronise(device)
            start = time.perf_counter()
            methods[name](settings.max_new_tokens, settings.seed + r)
            synchronise(device)
            times[name].append(time.perf_counter() - start)
            if clock is not None:
                inside[name].append(clock.seconds)
    return times, inside


# ---- the optional reference implementation ------------------------------------------------
def load_reference(path: str | os.PathLike[str]) -> Any:
    """Import a local copy of the reference module (a .py file or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "smc_power_sample_memopt.py"
    if not path.is_file():
        raise ValueError(f"--reference-module: {path} is not a readable Python file")
    spec = importlib.util.spec_from_file_location("powersmc_reference", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--reference-module: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a user's file: report whatever it raised, as one line
        raise ValueError(f"--reference-module: importing {path} failed: {exc!r}") from None
    for name in ("smc_power_sample_memopt", "SMCSamplingConfig"):
        if not hasattr(module, name):
            raise ValueError(f"--reference-module: {path} defines no {name}")
    return module


def reference_method(
    module: Any, model: LanguageModel, prompt: Sequence[int], settings: BenchSettings
) -> Callable[[int, int], Any]:
    """The reference's SMC with our settings: constant alpha, tau = 1/alpha, no top-p, EOS banned."""
    hf_model = getattr(model, "model", None)
    tokenizer = getattr(model, "tokenizer", None)
    if hf_model is None or tokenizer is None:
        raise ValueError("--reference-module needs a transformers model (not a toy model)")
    input_ids = torch.tensor([list(prompt)], dtype=torch.long, device=model.device)

    def reference(t: int, seed: int) -> Any:
        cfg = module.SMCSamplingConfig(
            max_new_tokens=t,
            alpha=settings.alpha,
            n_particles=settings.n_particles,
            ess_threshold=0.5,
            temperature=1.0 / settings.alpha,
            block_size=settings.smc_block_size,
            alpha_ramp_tokens=1,  # ramp_T <= 1: constant alpha, as our default schedule
            min_new_tokens=t,  # its way of suppressing EOS for the whole run
            top_k=0,
            top_p=1.0,
            stop_on_boxed=False,
        )
        # It seeds its own generator internally; ``seed`` cannot reach it.
        return module.smc_power_sample_memopt(hf_model, tokenizer, input_ids, cfg)

    return reference


def generate_method(
    model: LanguageModel, prompt: Sequence[int], n_particles: int, static: bool
) -> Callable[[int, int], Any]:
    """Hugging Face ``generate`` drawing n_particles sequences of exactly T tokens (EOS banned).

    Plain ancestral sampling (temperature 1, no top-k/top-p), like ``limit``; with
    ``static`` the library's static cache, which transformers compiles on CUDA.
    """
    hf_model = getattr(model, "model", None)
    if hf_model is None or not hasattr(hf_model, "generate"):
        raise ValueError("generate needs a transformers model (not a toy model)")
    input_ids = torch.tensor([list(prompt)] * n_particles, dtype=torch.long, device=model.device)
    options: dict[str, Any] = dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        pad_token_id=model.eos_token_id,
    )
    if static:
        options["cache_implementation"] = "static"

    def generate(t: int, seed: int) -> Any:
        torch.manual_seed(seed)  # generate draws from the global generator
        return hf_model.generate(**options, max_new_tokens=t, min_new_tokens=t)

    return generate
