"""The static KV cache of ``HFModel(static_cache=True)``: fixed shapes and addresses.

A ``StaticCache`` preallocates ``max_cache_len`` positions for a fixed batch of N rows;
reordering copies rows in place, so every cache tensor keeps its address across steps
(what CUDA graphs need). When all layers' keys and values share one shape they become
views of one pool tensor (layers, 2, N, heads, max_cache_len, head_dim), and an
accelerator's reorder is then 2 kernel launches for the whole model (``reorder_pool``)
instead of 4 per layer (``reorder_layers``, which the CPU prefers).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import StaticCache
from transformers.cache_utils import Cache, StaticLayer

__all__ = ["cache_rows", "is_identity", "reorder_layers", "reorder_pool", "to_static"]


def to_static(
    config: Any, name: str, source: Cache, n: int, length: int, max_len: int
) -> tuple[StaticCache, torch.Tensor | None]:
    """A StaticCache of n rows and max_len positions holding source's first length positions.

    source rows are broadcast when it has one row (the prefill) or copied when it has n.
    When all layers hold keys and values of one shape, they become views of one pool
    tensor (returned; else None): a reorder is then 2 kernels, not 4 per layer.
    """
    cache = StaticCache(config=config, max_cache_len=max_len)
    if len(cache.layers) != len(source.layers):
        raise NotImplementedError(f"static_cache: unexpected cache layout for {name}")
    pool = _allocate_pool(source, n, max_len)
    for index, (old, new) in enumerate(zip(source.layers, cache.layers, strict=True)):
        if type(new) is not StaticLayer:
            raise NotImplementedError(
                f"static_cache supports full-attention layers only, {name} has "
                f"{type(new).__name__}; use the dynamic cache"
            )
        keys = old.keys[:, :, :length].expand(n, -1, -1, -1)  # (n, H, L, D)
        values = old.values[:, :, :length].expand(n, -1, -1, -1)
        new.lazy_initialization(keys[:, :, :0], values[:, :, :0])  # allocates, marks static
        if pool is not None:
            # Swapped in layer by layer, so the layer's own allocation is freed at once.
            new.keys, new.values = pool[index, 0], pool[index, 1]
            torch._dynamo.mark_static_address(new.keys)  # CUDA graphs: fixed addresses
            torch._dynamo.mark_static_address(new.values)
        new.keys[:, :, :length].copy_(keys)
        new.values[:, :, :length].copy_(values)
        new.cumulative_length.fill_(length)
    return cache, pool


def reorder_pool(pool: torch.Tensor, ancestors: torch.Tensor, length: int) -> None:
    """Row i of every layer's first ``length`` positions := row ancestors[i]; 2 kernels.

    What accelerators use: per-layer copies cost 4 launches per layer (112 for
    qwen2-1.5b) of host time, which a replayed CUDA graph leaves little to hide behind
    (to be measured there with ``docs/measurements/measure_static_reorder.py``).
    """
    prefix = pool[:, :, :, :, :length]  # (layers, 2, n, H, L, D) view
    prefix.copy_(prefix.index_select(2, ancestors))


def reorder_layers(cache: Cache, ancestors: torch.Tensor, length: int) -> None:
    """``reorder_pool`` layer by layer: 4 kernels per layer, what the CPU uses.

    On the CPU it is the faster of the two (``docs/measurements/measure_static_reorder.py``:
    117 vs 272 ms at SmolLM2, N=32, 300 cached tokens): index_select is fast on dim 0.
    """
    for layer in cache.layers:
        for tensor in (layer.keys, layer.values):
            prefix = tensor[:, :, :length]  # (n, H, L, D) view into the preallocation
            prefix.copy_(prefix.index_select(0, ancestors))


def _allocate_pool(source: Cache, n: int, max_len: int) -> torch.Tensor | None:
    """Zeros (layers, 2, n, H, max_len, D) when every layer's keys and values share a shape.

    Zeros, not empty: masked positions get attention weight 0, and 0 · NaN garbage is NaN.
    """
    shapes = {
        (*t.shape[1:2], *t.shape[3:]) for layer in source.layers for t in (layer.keys, layer.values)
    }
    kinds = {(t.dtype, t.device) for layer in source.layers for t in (layer.keys, layer.values)}
    if len(shapes) != 1 or len(kinds) != 1:
        return None  # e.g. different key and value head dims: per-layer copies instead
    (heads, head_dim), ((dtype, device),) = shapes.pop(), kinds
    size = (len(source.layers), 2, n, heads, max_len, head_dim)
    return torch.zeros(size, dtype=dtype, device=device)


def cache_rows(cache: Cache) -> int:
    """Rows (batch size) currently held by a dynamic cache."""
    return int(cache.layers[0].keys.shape[0])


def is_identity(index: torch.Tensor, size: int) -> bool:
    """index == arange(size): the gather would be a no-op copy."""
    return index.numel() == size and bool((index == torch.arange(size, device=index.device)).all())
