"""Random weights with real dimensions: benchmarks on machines without the checkpoints.

``random_init_model(arch)`` builds a transformers model of ``RANDOM_INIT_CONFIGS[arch]``
dimensions with N(0, 0.02²) weights drawn from a seeded generator on the target
device, without transformers' slow default initialisation (``build_uninitialised``).
Tokens decode as ``<id>`` (``IdTokenizer``).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from powersmc_core.models.base import LanguageModel
from powersmc_core.models.errors import LoadInfo, ModelNameError, require
from powersmc_core.models.id_tokenizer import id_tokenizer_for
from powersmc_core.models.runtime import attach, resolve_device_dtype, wrap

if TYPE_CHECKING:
    import torch

__all__ = ["RANDOM_INIT_CONFIGS", "RANDOM_INIT_STD", "build_uninitialised", "random_init_model"]

# Real dimensions, random weights: for benchmarks on machines without the checkpoints.
RANDOM_INIT_CONFIGS: dict[str, dict[str, Any]] = {
    "qwen2-1.5b": dict(
        model_type="qwen2",
        hidden_size=1536,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        intermediate_size=8960,
        vocab_size=151936,
        tie_word_embeddings=True,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        bos_token_id=151643,
        eos_token_id=151643,
    ),
    "llama-1b": dict(
        model_type="llama",
        hidden_size=2048,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=8192,
        vocab_size=128256,
        tie_word_embeddings=True,
        max_position_embeddings=131072,
        rope_theta=500_000.0,
        rms_norm_eps=1e-5,
        bos_token_id=128000,
        eos_token_id=128001,
    ),
    "smollm2-135m": dict(
        model_type="llama",
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        intermediate_size=1536,
        vocab_size=49152,
        tie_word_embeddings=True,
        max_position_embeddings=8192,
        rope_theta=100_000.0,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
    ),
    "tiny": dict(
        model_type="llama",
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=512,
        tie_word_embeddings=True,
        max_position_embeddings=1024,
        rope_theta=10_000.0,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
    ),
}
RANDOM_INIT_STD = 0.02  # N(0, 0.02²) weights: logits of std ~0.02·sqrt(hidden) ≈ 0.8, not flat


def random_init_model(
    arch: str,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    seed: int = 0,
) -> LanguageModel:
    """A model with ``RANDOM_INIT_CONFIGS[arch]`` dimensions and N(0, 0.02²) weights.

    Norm weights are 1 and biases 0, as after a standard init; the draw comes from a
    generator seeded by ``seed`` on the target device (no global RNG). Tokens decode
    as ``<id>`` (``IdTokenizer``). Not shared: every call builds a fresh model.
    """
    if arch not in RANDOM_INIT_CONFIGS:
        raise ModelNameError(
            f"unknown random-init architecture {arch!r}: choose one of "
            f"{', '.join(RANDOM_INIT_CONFIGS)}"
        )
    require("transformers")
    import torch
    from transformers import AutoConfig

    start = time.perf_counter()
    torch_device, torch_dtype = resolve_device_dtype(device, dtype)
    spec = dict(RANDOM_INIT_CONFIGS[arch])
    config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    hf_model = build_uninitialised(config, torch_dtype, torch_device)
    generator = torch.Generator(device=torch_device).manual_seed(seed)
    with torch.no_grad():
        for param_name, param in hf_model.named_parameters():
            if param.ndim >= 2:
                param.normal_(0.0, RANDOM_INIT_STD, generator=generator)
            elif "norm" in param_name:
                param.fill_(1.0)
            else:
                param.zero_()
    hf_model.eval()
    model = wrap(hf_model, id_tokenizer_for(config), f"random:{arch}", False)
    seconds = time.perf_counter() - start
    attach(model, LoadInfo(f"random:{arch}", "random-init", "built", seconds))
    return model


def build_uninitialised(config: Any, dtype: torch.dtype, device: torch.device) -> Any:
    """Allocate a model on ``device`` without running transformers' (slow) weight init.

    Buffers such as RoPE frequencies are still computed by the constructors; weights
    hold garbage until the caller fills or loads them. Falls back to a normal (slow,
    initialised) construction if transformers moves ``no_init_weights``.
    """
    import torch
    from transformers import AutoModelForCausalLM

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # pragma: no cover - older/newer transformers layout
        no_init_weights = contextlib.nullcontext
    with torch.device(device), no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.tie_weights()  # skipped with init_weights; needed for tie_word_embeddings
    return model
