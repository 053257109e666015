"""Transformers backend set-up: the cache keyword, and the device/dtype policy re-exported.

Small helpers ``HFModel`` and the loader share. Importing this module imports neither torch
nor transformers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

# The device/dtype policy is models/device.py; re-exported for the torch side.
from powersmc_core.models.device import pick_device, pick_dtype

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
