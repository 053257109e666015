"""PyTorch ops an SMC step issues outside the model's forward: the host's share of a step.

On a GPU every such op is a kernel launch (views excepted) that the host pays for while
the forward, a replayed CUDA graph, runs; as long as the host keeps ahead of the GPU
(no synchronisation, see ``stream_every``) they overlap. This counts them with the
PyTorch profiler over batched decode steps of the static-cache fast path on the
``tiny`` random transformer (the count does not depend on the model's size), the
forward fenced off by a ``record_function`` so only the sampler's own ops are counted.
It then times as many more steps (records and flushes included, no profiler) and
subtracts the time spent in the forward: the host's wall time per step outside the model,
an upper bound on what issuing those ops costs (on this CPU it also includes running them,
on rows of 512 logits).

    python docs/measurements/count_step_ops.py --particles 8 --stream-every 16 --steps 32
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from powersmc_core import PowerSMC, SMCConfig
from powersmc_core.bench import Clock, SuppressEOS, clocked
from powersmc_core.models.hf.model import HFModel
from powersmc_core.models.loading import random_init_model

# Ops that only make views or metadata: no kernel on a GPU.
VIEW_OPS = {
    "aten::view",
    "aten::unsqueeze",
    "aten::squeeze",
    "aten::select",
    "aten::slice",
    "aten::expand",
    "aten::transpose",
    "aten::reshape",
    "aten::as_strided",
    "aten::alias",
    "aten::detach",
    "aten::lift_fresh",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--particles", type=int, default=8)
    parser.add_argument("--stream-every", type=int, default=16)
    parser.add_argument("--steps", type=int, default=32, help="decode steps profiled")
    parser.add_argument("--ess-threshold", type=float, default=0.5)
    args = parser.parse_args()
    if args.particles < 1 or args.stream_every < 1 or args.steps < 1:
        raise SystemExit("error: --particles, --stream-every and --steps must be >= 1")

    base = random_init_model("tiny", device="cpu", dtype="float32")
    new_tokens = 2 * args.steps + args.stream_every  # a warm-up block, profiled, timed
    cache_len = 8 + new_tokens + 1
    fast = HFModel(
        base.model, base.tokenizer, base.name, static_cache=True, max_cache_len=cache_len
    )
    forward, in_forward = fast._step, Clock()

    def fenced(*inputs: Any) -> torch.Tensor:
        with record_function("model_forward"):
            return forward(*inputs)

    fast._step = clocked(fenced, in_forward)
    config = SMCConfig(
        alpha=4.0,
        n_particles=args.particles,
        max_new_tokens=new_tokens,
        ess_threshold=args.ess_threshold,
        seed=0,
    )
    run = PowerSMC(SuppressEOS(fast), config, stream_every=args.stream_every).stream([1, 5, 9])
    for _ in range(args.stream_every):  # the first block: set-up ops are not per-step costs
        next(run)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            run._decode_step()
    # Top level only: ops inside the fenced forward (or inside another op) have a parent.
    top = [e for e in prof.events() if e.cpu_parent is None and e.name.startswith("aten::")]
    names = Counter(event.name for event in top)
    # aten::to on a tensor already of that dtype and device returns it: no kernel.
    no_op_casts = sum(
        1
        for event in top
        if event.name == "aten::to"
        and not any(child.name == "aten::_to_copy" for child in event.cpu_children)
    )
    total = len(top) / args.steps
    launching = sum(n for name, n in names.items() if name not in VIEW_OPS) - no_op_casts
    kernels = launching / args.steps
    print(
        f"N={args.particles} · stream_every={args.stream_every} · {args.steps} batched steps "
        f"(static cache, CPU): {total:.1f} ops per step outside the forward, "
        f"{kernels:.1f} of them neither views nor no-op casts"
    )
    for name, count in names.most_common(12):
        print(f"  {name:<28} {count / args.steps:5.1f} per step")

    run._flush()  # the profiled steps' records are not part of the timed stretch
    run._ready.clear()
    in_flush = Clock()
    run._flush = clocked(run._flush, in_flush)  # type: ignore[method-assign]
    in_forward.seconds, decoded = 0.0, run.decoded
    start = time.perf_counter()
    for _ in run:  # the remaining steps, records built every stream_every steps
        pass
    wall = time.perf_counter() - start
    steps = run.decoded - decoded

    def per_step(seconds: float) -> str:
        return f"{1000 * seconds / steps:.3f} ms per step"

    print(
        f"host time outside the forward: {per_step(wall - in_forward.seconds)} over {steps} "
        f"steps (building records at the flushes: {per_step(in_flush.seconds)}; "
        f"forward: {per_step(in_forward.seconds)})"
    )


if __name__ == "__main__":
    main()
