"""Transformers backend set-up: device and dtype choice, the cache keyword.

Small helpers ``HFModel`` and the loader share. Importing this module imports torch
but not transformers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

# Shared with the llama.cpp backend; re-exported here for the torch side.
from powersmc_core.models.text_io import GENERATION_MARGIN, collect_eos_token_ids

__all__ = [
    "CACHE_KEYWORDS",
    "GENERATION_MARGIN",
    "STATIC_HEADROOM",
    "cache_keyword",
    "collect_eos_token_ids",
    "pick_device",
    "pick_dtype",
]

# A static cache without an explicit max_cache_len holds the prompt plus this many
# tokens (rounded up to a multiple of it) and doubles when full.
STATIC_HEADROOM = 256

# Transformers 5.24 renamed the forward keyword past_key_values -> cache (old name
# deprecated); 5.17 only knows past_key_values. Checked in this order.
CACHE_KEYWORDS = ("cache", "past_key_values")

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device, else CUDA, then Apple MPS, then CPU."""
    if requested is not None:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {requested!r} requested but Apple MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device | str, requested: str | None = None) -> torch.dtype:
    """The requested dtype, else bfloat16 on CUDA and float32 on CPU/MPS.

    CPU matmuls in bf16 are slow and MPS bf16 support is partial, so those get float32.
    """
    if requested is not None and requested != "auto":
        try:
            return _DTYPES[requested.lower()]
        except KeyError:
            valid = ", ".join(sorted(_DTYPES))
            raise ValueError(f"unknown dtype {requested!r}; valid: auto, {valid}") from None
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def cache_keyword(forward: Callable[..., Any]) -> str:
    """Name of the KV-cache argument of a model's ``forward``: "cache" or "past_key_values"."""
    parameters = inspect.signature(forward).parameters
    for name in CACHE_KEYWORDS:
        if name in parameters:
            return name
    raise TypeError(
        f"model forward {getattr(forward, '__qualname__', forward)!r} takes none of "
        f"{CACHE_KEYWORDS}; this backend needs a causal LM that accepts a KV cache"
    )
