"""Resampling schemes: pure functions ``(weights, generator) -> ancestor indices``.

Every scheme is unbiased: the expected number of offspring of particle i is
N·W_i. Systematic, stratified and residual resampling never have more offspring
variance than multinomial; systematic is the default (lowest variance in
practice, one uniform draw). Each costs O(N log N) at most, runs on the
device of ``weights`` and never reads a value back to the host (no device sync).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["RESAMPLERS", "get_resampler", "multinomial", "residual", "stratified", "systematic"]

Resampler = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _inverse_cdf(uniforms: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Ancestor a_n = min{i : sum_{j<=i} W_j > u_n} for uniforms u_n in [0, 1)."""
    cdf = torch.cumsum(weights, 0)
    # cumsum rounding may leave cdf[-1] slightly below 1; a uniform above it must map to N-1.
    return torch.searchsorted(cdf, uniforms, right=True).clamp_(max=weights.numel() - 1)


def _uniform(n: int, weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, dtype=weights.dtype, device=weights.device)


def multinomial(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """N i.i.d. draws from Categorical(W); offspring ~ Multinomial(N, W)."""
    return _inverse_cdf(_uniform(weights.numel(), weights, generator), weights)


def stratified(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One uniform in each stratum [n/N, (n+1)/N): u_n = (n + U_n)/N."""
    n = weights.numel()
    grid = torch.arange(n, dtype=weights.dtype, device=weights.device)
    return _inverse_cdf((grid + _uniform(n, weights, generator)) / n, weights)


def systematic(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One shared uniform: u_n = (n + U)/N; offspring of i is floor or ceil of N·W_i."""
    n = weights.numel()
    grid = torch.arange(n, dtype=weights.dtype, device=weights.device)
    return _inverse_cdf((grid + _uniform(1, weights, generator)) / n, weights)


def residual(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Keep floor(N·W_i) copies of i, then draw the R leftovers multinomially from the residuals."""
    n = weights.numel()
    scaled = n * weights
    counts = torch.floor(scaled).to(torch.long)
    residuals = scaled - counts.to(weights.dtype)
    n_left = n - counts.sum()  # R, a 0-d tensor: reading it on the host would sync the device
    # Draw N leftovers and keep the first R: a fixed-size draw needs no host synchronisation.
    tiny = torch.finfo(weights.dtype).tiny
    extra = _inverse_cdf(_uniform(n, weights, generator), residuals / residuals.sum().clamp(tiny))
    keep = torch.arange(n, device=weights.device) < n_left
    counts = counts.scatter_add(0, extra, keep.to(torch.long))
    return torch.repeat_interleave(torch.arange(n, device=weights.device), counts, output_size=n)


RESAMPLERS: dict[str, Resampler] = {
    "multinomial": multinomial,
    "systematic": systematic,
    "stratified": stratified,
    "residual": residual,
}


def get_resampler(name: str) -> Resampler:
    """Look a scheme up by name; unknown names raise ``ValueError`` listing the valid ones."""
    try:
        return RESAMPLERS[name]
    except KeyError:
        raise ValueError(
            f"unknown resampling scheme {name!r}; choose one of {sorted(RESAMPLERS)}"
        ) from None
