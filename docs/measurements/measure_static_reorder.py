"""Cost of one static-cache reorder: the pooled gather against per-layer copies.

With device-side resampling decisions (``stream_every > 1``) the static cache is
reordered at every block boundary, by the identity when no resampling is due, so the
reorder sits in the hot loop. ``HFModel`` keeps all layers' keys and values in one
pool tensor: ``reorder_pool`` is one gather and one copy (2 kernels, what
accelerators use), ``reorder_layers`` 4 kernels per layer (what the CPU uses). Both
run here side by side on the same cache, interleaved round by round, and the medians
and their ratio are printed, with the bytes moved (read + write of the gather and of
the copy back) and the implied bandwidth.

    python docs/measurements/measure_static_reorder.py --particles 8 --length 128
    python docs/measurements/measure_static_reorder.py --model random:qwen2-1.5b --device cuda \\
        --dtype bfloat16 --particles 32 --length 300

Times are wall clock; on CUDA (and MPS) every timed call is bracketed by synchronisations, so a
call's time includes its kernel launches and the kernels themselves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from powersmc_core.bench import synchronise
from powersmc_core.models.hf.model import HFModel, reorder_layers, reorder_pool
from powersmc_core.models.loading import DEFAULT_MODEL, load_model


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="name, folder or random:<arch>")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: best)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16")
    parser.add_argument("--particles", type=int, default=8, help="cache rows N")
    parser.add_argument("--length", type=int, default=128, help="cached tokens per row")
    parser.add_argument("--rounds", type=int, default=30, help="timed calls per variant")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", metavar="PATH", help="also write the results there")
    return parser.parse_args()


def timed(reorder: Callable[[], None], device: torch.device) -> float:
    synchronise(device)
    start = time.perf_counter()
    reorder()
    synchronise(device)
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    if args.particles < 2 or args.length < 1 or args.rounds < 1:
        raise SystemExit("error: need --particles >= 2, --length >= 1, --rounds >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    if not isinstance(loaded, HFModel):
        raise SystemExit(f"error: {args.model} is not a transformers model")
    model = HFModel(loaded.model, loaded.tokenizer, loaded.name, static_cache=True)
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, model.vocab_size, (args.length,), generator=generator).tolist()
    state, _ = model.start(prompt, args.particles)
    pool, length = state.pool, state.length
    if pool is None:
        raise SystemExit(f"error: {model.name}'s layers differ, so it has no pool to compare")
    # A cyclic shift: every row moves (the CPU skips identity reorders altogether).
    ancestors = torch.roll(torch.arange(args.particles), 1).to(model.device)
    variants: dict[str, Callable[[], None]] = {
        "pooled": lambda: reorder_pool(pool, ancestors, length),
        "per_layer": lambda: reorder_layers(state.cache, ancestors, length),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for reorder in variants.values():  # warm-up: allocator, kernels
        timed(reorder, model.device)
    for _ in range(args.rounds):
        for name, reorder in variants.items():
            times[name].append(timed(reorder, model.device))

    cached = pool[:, :, :, :, :length]
    moved = 4 * cached.numel() * cached.element_size()  # gather R+W, copy back R+W
    ms = {name: 1000 * statistics.median(samples) for name, samples in times.items()}
    layers = pool.shape[0]
    used = "per_layer" if model.device.type == "cpu" else "pooled"
    print(
        f"{model.name} · {model.device} · {model.dtype} · N={args.particles} · "
        f"{length} cached tokens · {layers} layers · {args.rounds} rounds (medians)"
    )
    for name, value in ms.items():
        kernels = 2 if name == "pooled" else 4 * layers
        print(
            f"{name:>10}: {value:8.3f} ms  {kernels:4d} kernels  "
            f"{moved / value / 1e6:8.1f} GB/s effective"
        )
    ratio = ms["per_layer"] / ms["pooled"]
    print(f"per_layer / pooled = {ratio:.2f}   ({moved / 1e6:.1f} MB moved per reorder)")
    print(f"HFModel uses {used} on {model.device.type}")
    if args.json:
        summary = {
            "model": model.name,
            "device": str(model.device),
            "dtype": str(model.dtype).removeprefix("torch."),
            "n_particles": args.particles,
            "cached_tokens": length,
            "layers": layers,
            "rounds": args.rounds,
            "bytes_moved": moved,
            "pooled_ms": ms["pooled"],
            "per_layer_ms": ms["per_layer"],
            "per_layer_over_pooled": ratio,
            "hfmodel_uses": used,
        }
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main()
