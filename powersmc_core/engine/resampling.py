"""Resampling schemes: ``(weights, generator) -> Resampled(ancestors, log_w, log_mass)``.

A scheme returns who survives (slot j continues slot ``ancestors[j]``) and with which
weight: unnormalised post weights v_j, in the units of the normalised input weights W,
such that for every particle i

    E[ sum_{j: A_j = i} v_j ] = W_i            (unbiased, hence E[sum_j v_j] = 1).

``log_w`` are the v_j normalised and ``log_mass`` = log sum_j v_j; the engine adds
``log_mass`` to log Ẑ, so Ẑ stays unbiased whatever the scheme (log Ẑ telescopes the
unnormalised masses: m_j = Ẑ·v_j after resampling, Ẑ' = Ẑ·sum_j v_j).

- Four schemes draw ancestors only (``EqualWeights``): v_j = 1/N, log_mass = 0, and
  unbiasedness is E[offspring of i] = N·W_i. Systematic, stratified and residual never
  have more offspring variance than multinomial; systematic is the default (lowest
  variance in practice, one uniform draw).
- ``Chopthin`` (Gandy & Lau 2016) keeps weights unequal but bounds their spread:
  max_j v_j / min_j v_j <= eta after resampling (see its docstring for the maths).

Each scheme costs O(N log N) at most, runs on the device of ``weights`` and never
reads a value back to the host (no device sync): the output size is always N.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

__all__ = [
    "CHOPTHIN_ETA",
    "RESAMPLERS",
    "Chopthin",
    "EqualWeights",
    "Resampled",
    "Resampler",
    "chopthin_threshold",
    "get_resampler",
    "multinomial",
    "residual",
    "stratified",
    "systematic",
]

CHOPTHIN_ETA = 4.0  # the smallest eta for which chopthin's ratio bound holds


class Resampled(NamedTuple):
    """A scheme's draw: ancestors and the post-resampling weights, all (N,) or 0-d tensors."""

    ancestors: torch.Tensor  # (N,) long: slot j continues slot ancestors[j]
    log_w: torch.Tensor  # (N,) normalised log-weights after resampling
    log_mass: torch.Tensor  # 0-d: log sum_j v_j, the post mass (E[exp] = 1), a factor of Ẑ


Resampler = Callable[[torch.Tensor, torch.Generator], Resampled]
AncestorDraw = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


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


@dataclass(frozen=True)
class EqualWeights:
    """A scheme that draws ancestors only: every survivor gets weight 1/N, the mass stays 1."""

    draw: AncestorDraw

    def __call__(self, weights: torch.Tensor, generator: torch.Generator) -> Resampled:
        ancestors = self.draw(weights, generator)
        log_w = torch.full_like(weights, -math.log(weights.numel()))
        return Resampled(ancestors, log_w, weights.new_zeros(()))


def _split(
    sorted_w: torch.Tensor, cumsum0: torch.Tensor, a: torch.Tensor, eta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sum of W_i < a, #{a <= W_i <= eta·a/2}, sum of W_i > eta·a/2), for each a."""
    n_thin = torch.searchsorted(sorted_w, a, right=False)
    n_upto_b = torch.searchsorted(sorted_w, a * (eta / 2), right=True)
    return cumsum0[n_thin], n_upto_b - n_thin, cumsum0[-1] - cumsum0[n_upto_b]


def chopthin_threshold(weights: torch.Tensor, eta: float) -> torch.Tensor:
    """The a > 0 with f(a) = sum_i h_i(a) = N (``Chopthin``'s expected offspring), 0-d.

    Between consecutive breakpoints {W_i} ∪ {2 W_i/eta} the three sets are fixed and
    f(a) = A/a + B with A = sum_thin W + (2/eta)·sum_chop W, B = #kept; f is continuous and
    non-increasing. Evaluate f at all 2N sorted breakpoints (searchsorted on the sorted
    weights), take the last breakpoint with f >= N, and solve A/a + B = N in closed form
    on the interval after it. Vectorised; the bracket index stays a device tensor.
    """
    n = weights.numel()
    sorted_w, _ = torch.sort(weights)
    cumsum0 = torch.cat([sorted_w.new_zeros(1), torch.cumsum(sorted_w, 0)])
    points, _ = torch.sort(torch.cat([sorted_w, sorted_w * (2.0 / eta)]))
    tiny = torch.finfo(weights.dtype).tiny
    safe = points.clamp_min(tiny)  # a = 0 (a zero weight): f = +inf, as it should
    s_thin, kept, s_chop = _split(sorted_w, cumsum0, safe, eta)
    f = s_thin / safe + kept + s_chop / (safe * (eta / 2))
    # f(min breakpoint) >= N in exact arithmetic (every h_i >= 1 there): at least index 0.
    k = ((f >= n).sum() - 1).clamp(0, 2 * n - 1).view(1)
    lo = points.index_select(0, k)
    hi = points.index_select(0, (k + 1).clamp(max=2 * n - 1))
    s_thin, kept, s_chop = _split(sorted_w, cumsum0, (lo + hi) / 2, eta)
    room = n - kept.to(weights.dtype)
    a = (s_thin + s_chop * (2.0 / eta)) / room.clamp_min(tiny)
    # room = 0 only when every particle is kept (lo = hi = the common weight).
    a = torch.where(room > 0, a, lo)
    return torch.minimum(torch.maximum(a, lo), hi).squeeze(0)


@dataclass(frozen=True)
class Chopthin:
    """Chopthin resampling (Gandy & Lau, IEEE TSP 2016): thin the light, chop the heavy.

    With threshold a > 0 and b = eta·a/2 (eta >= 4), particle i has expected offspring

        h_i = W_i/a   if W_i < a            thin: survives with probability h_i, weight a
        h_i = 1       if a <= W_i <= b      keep: one copy, weight W_i
        h_i = W_i/b   if W_i > b            chop: n_i copies, weight W_i/n_i each

    where a solves sum_i h_i = N (``chopthin_threshold``). The counts n_i are one
    systematic draw with probabilities h_i/N, so n_i is floor(h_i) or ceil(h_i) and
    sum_i n_i = N: a kept particle gets exactly one copy, a thinned one 0 or 1.

    Unbiased: E[n_i·a] = h_i·a = W_i for a thinned particle (a = W_i/h_i; the code uses
    the probabilities actually drawn from, so this is exact in floating point), and a
    kept or chopped particle hands on exactly W_i. Bounded: a chopped copy has
    W_i/n_i <= W_i/floor(h_i) <= 2b = eta·a (floor(h) >= h/2 for h >= 1) and
    W_i/n_i > W_i/(h_i + 1) > b/2 = eta·a/4 >= a, so every post weight lies in
    [a, eta·a]: max/min <= eta (this is where eta >= 4 is needed). When all weights lie
    within a factor eta/2 of each other every particle is kept: chopthin is the identity.
    The post mass sum_j v_j (expectation 1) goes to log Ẑ through ``log_mass``.
    """

    eta: float = CHOPTHIN_ETA

    def __post_init__(self) -> None:
        if not (math.isfinite(self.eta) and self.eta >= CHOPTHIN_ETA):
            raise ValueError(f"chopthin eta must be >= {CHOPTHIN_ETA:g}; got {self.eta}")

    def __call__(self, weights: torch.Tensor, generator: torch.Generator) -> Resampled:
        n = weights.numel()
        a = chopthin_threshold(weights, self.eta)
        b = a * (self.eta / 2)
        thin = weights < a
        h = torch.where(thin, weights / a, torch.where(weights > b, weights / b, 1.0))
        total = h.sum()
        ancestors = systematic(h / total, generator)  # offspring n_i: floor or ceil of N·h_i/total
        counts = torch.zeros_like(ancestors).scatter_add_(0, ancestors, torch.ones_like(ancestors))
        # A thinned survivor was kept with probability N·h_i/total: weight W_i / that = a·total/N.
        share = torch.where(thin, a * total / n, weights / counts.clamp_min(1).to(weights.dtype))
        log_v = share.log()[ancestors]
        log_mass = torch.logsumexp(log_v, 0)
        return Resampled(ancestors, log_v - log_mass, log_mass)


RESAMPLERS: dict[str, Resampler] = {
    "multinomial": EqualWeights(multinomial),
    "systematic": EqualWeights(systematic),
    "stratified": EqualWeights(stratified),
    "residual": EqualWeights(residual),
    "chopthin": Chopthin(),
}


def get_resampler(name: str, chopthin_eta: float = CHOPTHIN_ETA) -> Resampler:
    """Look a scheme up by name; unknown names raise ``ValueError`` listing the valid ones.

    ``chopthin_eta`` is chopthin's bound on the post-resampling weight ratio (the other
    schemes leave every weight equal and ignore it).
    """
    try:
        scheme = RESAMPLERS[name]
    except KeyError:
        raise ValueError(
            f"unknown resampling scheme {name!r}; choose one of {sorted(RESAMPLERS)}"
        ) from None
    return Chopthin(chopthin_eta) if isinstance(scheme, Chopthin) else scheme
