"""Where the requantised copies' speed comes from: one N = 8 decode step per GGUF file,
llama.cpp's load-time repacking (``use_extra_bufts``) on and off.

    python docs/measurements/measure_repack.py --rounds 5 --steps 16

Loads the embedded Q4_1 file and its Q4_0 and Q8_0 copies (``gguf_cache.requantised_gguf``,
made at first use) twice each, repack on and off; per round (order rotating) prefills a
37-token prompt, copies it to 8 sequences and times ``--steps`` decodes of 8 random tokens;
prints the median and range of ms per step. Results: docs/bench.md, "requantisation".
"""

from __future__ import annotations

import argparse
import statistics
import time
import types

import numpy as np

from powersmc_core.bench.numerics import _Context
from powersmc_core.models.gguf_cache import embedded_gguf_path, requantised_gguf
from powersmc_core.models.llamacpp.context import library


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (one warm-up more)")
    parser.add_argument("--steps", type=int, default=16, help="decode steps per round")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    lib = library()
    files = {"q4_1": embedded_gguf_path()}
    files.update({q: requantised_gguf(qtype=q) for q in ("q4_0", "q8_0")})
    models = {}
    for name, path in files.items():
        for repack in (True, False):
            params = lib.llama_model_default_params()
            params.n_gpu_layers = 0
            params.use_extra_bufts = repack  # the CPU's repacked (interleaved) buffers
            pointer = lib.llama_model_load_from_file(str(path).encode(), params)
            vocab = int(lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(pointer)))
            models[(name, repack)] = types.SimpleNamespace(
                lib=lib, pointer=pointer, vocab_size=vocab
            )
    prompt = list(range(100, 137))
    rng = np.random.default_rng(0)
    keys = list(models)
    times: dict[tuple[str, bool], list[float]] = {key: [] for key in keys}
    for r in range(args.rounds + 1):  # round 0: warm-up
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            ctx = _Context(models[key], 64, 8, 512, args.threads)
            ctx.prefill(prompt)
            memory = lib.llama_get_memory(ctx.pointer)
            for seq in range(1, 8):
                lib.llama_memory_seq_cp(memory, 0, seq, -1, -1)
            start = time.perf_counter()
            for step in range(args.steps):
                tokens = rng.integers(0, models[key].vocab_size, 8).tolist()
                ctx.decode(tokens, [len(prompt) + step] * 8, range(8), True)
            if r:
                times[key].append(1000 * (time.perf_counter() - start) / args.steps)
            ctx.close()
    for (name, repack), values in times.items():
        print(
            f"{name} repack {'on ' if repack else 'off'} ms/step median "
            f"{statistics.median(values):.1f} [{min(values):.1f}, {max(values):.1f}]"
        )


if __name__ == "__main__":
    main()
