"""Steps decoded on the device, staged until the host reads them back as ``StepRecord``s.

The sampler decodes a step entirely on the device and appends a ``Pending`` (tensors,
not host values); every ``stream_every`` steps ``read_back`` moves all pending fields to
the host in one packed transfer and ``to_record`` turns each step into a frozen record.
This is why the records are the same for every ``stream_every``: only *when* the host
looks changes, never what was computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from powersmc_core.engine.records import StepRecord

__all__ = [
    "SCALARS",
    "Draw",
    "Pending",
    "compute_dtype",
    "nan_error",
    "read_back",
    "to_record",
    "weights_error",
    "write_history",
]


@dataclass(frozen=True)
class Draw:
    """One proposal draw for every row, (N,) each: y (-1 where finished), log p(y), log q(y),
    log sum_v p(v)^(1/tau) and a 0-d ``ok`` (False when some row's log-probs are not finite)."""

    tokens: torch.Tensor
    lp_token: torch.Tensor
    lq_token: torch.Tensor
    log_mass: torch.Tensor
    ok: torch.Tensor


@dataclass(frozen=True)
class Pending:
    """One decoded step still on the device; the next flush turns it into a StepRecord.

    Particle tensors are (N,) and describe the slots before resampling. ``scalars`` holds
    ess, log_z, done, resampled, logits_ok, weights_ok (one transfer per flush).
    """

    step: int
    alpha: float
    tau: float
    tokens: torch.Tensor
    grows: torch.Tensor
    log_w: torch.Tensor
    log_inc: torch.Tensor
    renyi: torch.Tensor
    log_p: torch.Tensor
    finished: torch.Tensor
    roots: torch.Tensor
    ancestors: torch.Tensor
    scalars: torch.Tensor
    texts: tuple[str, ...] | None


SCALARS = ("ess", "log_z", "done", "resampled", "logits_ok", "weights_ok")
INTS = ("tokens", "roots", "ancestors")
BOOLS = ("grows", "finished")
FLOATS = ("log_w", "log_inc", "renyi", "log_p", "scalars")


def read_back(pending: list[Pending], dtype: torch.dtype) -> dict[str, list]:
    """Every field of the pending steps as host lists (k rows each), in one transfer.

    Packed into one tensor of the weight dtype: token ids and indices stay exact
    (below 2**24 even in float32), and an accelerator synchronises once, not per field.
    """
    names = (*INTS, *BOOLS, *FLOATS)
    blocks = [torch.stack([getattr(p, name) for p in pending]).to(dtype) for name in names]
    packed = torch.cat([b.flatten() for b in blocks]).cpu()
    parts = torch.split(packed, [b.numel() for b in blocks])
    host = {}
    for name, block, part in zip(names, blocks, parts, strict=True):
        part = part.view(block.shape)
        if name in INTS:
            part = part.to(torch.long)
        elif name in BOOLS:
            part = part.to(torch.bool)
        host[name] = part.tolist()
    return host


def to_record(
    p: Pending, i: int, fields: dict[str, list], alpha: float, elapsed: float, texts
) -> StepRecord:
    """Step ``p`` (row i of the read-back ``fields``) as a StepRecord; alpha is the final exponent."""
    values = dict(zip(SCALARS, fields["scalars"][i], strict=True))
    done = bool(values["done"])
    roots, ancestors = fields["roots"][i], fields["ancestors"][i]
    return StepRecord(
        step=p.step,
        alpha=p.alpha,
        tau=p.tau,
        catch_up=(alpha - p.alpha) if done else 0.0,
        tokens=tuple(fields["tokens"][i]),
        log_weights=tuple(fields["log_w"][i]),
        log_increment=tuple(fields["log_inc"][i]),
        renyi=tuple(fields["renyi"][i]),
        log_p=tuple(fields["log_p"][i]),
        finished=tuple(fields["finished"][i]),
        ess=values["ess"],
        resampled=bool(values["resampled"]),
        ancestors=tuple(ancestors),
        roots=tuple(roots),
        n_lineages=len({roots[a] for a in ancestors}),
        n_unique_ancestors=len(set(ancestors)),
        log_z=values["log_z"],
        elapsed=elapsed,
        texts=texts,
        done=done,
    )


def nan_error(model_name: str, step: int) -> FloatingPointError:
    return FloatingPointError(
        f"model {model_name!r} returned NaN log-probabilities (or a row with no "
        f"possible token) at step {step}; check the model weights and dtype "
        "(float16 overflow is a common cause)"
    )


def weights_error(step: int) -> FloatingPointError:
    return FloatingPointError(
        f"every particle has zero or non-finite weight at step {step}; the model "
        "produced impossible tokens or NaN log-probabilities"
    )


def compute_dtype(logp: torch.Tensor) -> torch.dtype:
    """The dtype next-token log-probs are tempered in (float64 on CPU, fp32 for bf16/fp16)."""
    # CPU float32 exp is ~100x slower on underflowing inputs (below about -87), where most
    # of alpha·log p lies: tempering in float64 there is faster as well as more precise.
    if logp.device.type == "cpu":
        return torch.float64
    # bf16/fp16 logits are upcast: tempering by 1/tau and logsumexp need the mantissa.
    return torch.float32 if logp.dtype in (torch.float16, torch.bfloat16) else logp.dtype


def write_history(
    history: torch.Tensor, t: int, tokens: torch.Tensor, max_new_tokens: int
) -> torch.Tensor:
    """Token ids (N, T) with column t - 1 set to ``tokens``; doubles its width when full."""
    if t > history.shape[1]:
        grown = min(2 * history.shape[1], max_new_tokens)
        pad = torch.full(
            (history.shape[0], grown - history.shape[1]),
            -1,
            dtype=torch.long,
            device=history.device,
        )
        history = torch.cat([history, pad], dim=1)
    history[:, t - 1] = tokens
    return history
