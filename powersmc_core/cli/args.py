"""Argument helpers shared by the ``run`` and ``bench`` commands (and ``eval``).

Both commands import this module and neither imports the other at module level, so
there is no ``cli`` <-> ``bench`` cycle. What lives here:

- ``Parser``: argparse reporting a usage problem as one ``error:`` line (exit 2);
- ``add_config_arguments``/``config_from_args``: one flag per ``SMCConfig`` field,
  built from the fields' own ``Knob`` metadata (``config.config_knobs``);
- ``add_model_arguments``/``load_model_from_args``: ``--model`` and friends, through
  the one name parser and instance cache (``models.loading.load_model``);
- ``add_backend_arguments``: ``--backend torch|llamacpp|auto`` and ``--threads``, resolved
  by ``models.backends.load_model_with_backend`` (the one place a backend is chosen);
- ``parse_prompt``: ``--prompt`` through the one encoding path (``prompts``);
- ``check_writable``: fail before decoding when an output path cannot be written.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from powersmc_core.engine.config import SMCConfig, config_knobs
from powersmc_core.models.base import LanguageModel
from powersmc_core.models.prompts import encode_prompt
from powersmc_core.models.toy import ToyLM

__all__ = [
    "CONFIG_FLAGS",
    "EXIT_USAGE",
    "Parser",
    "add_backend_arguments",
    "add_config_arguments",
    "add_model_arguments",
    "check_threads",
    "check_writable",
    "config_from_args",
    "load_model_from_args",
    "parse_prompt",
]

EXIT_USAGE = 2

# Flag dest -> SMCConfig field, derived from the fields' metadata (one flag per field).
CONFIG_FLAGS = {knob.dest: name for name, knob in config_knobs().items()}
_TYPES = {"int": int, "float": float}


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage problem as one ``error:`` line (exit 2), no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def add_config_arguments(group: argparse._ActionsContainer) -> None:
    """One flag per ``SMCConfig`` field: name, short form, help, type, choices, default.

    The field's own spelling (``--n-particles``) leads; a knob's older flag (``--particles``)
    stays an alias.
    """
    defaults = SMCConfig()
    for name, knob in config_knobs().items():
        canonical = "--" + name.replace("_", "-")
        flags = [canonical] if knob.flag != canonical else []
        flags += [knob.flag] + ([knob.short] if knob.short else [])
        options: dict = {"default": getattr(defaults, name), "help": knob.help, "dest": knob.dest}
        if knob.kind == "choice":
            options["choices"] = knob.choices
        else:
            options["type"] = _TYPES[knob.kind]
        group.add_argument(*flags, **options)


def config_from_args(args: argparse.Namespace) -> SMCConfig:
    """The ``SMCConfig`` the parsed flags describe (validated by ``SMCConfig`` itself)."""
    return SMCConfig(**{field: getattr(args, dest) for dest, field in CONFIG_FLAGS.items()})


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --random-init, --device, --dtype, --trust-remote-code, --copy-on-write."""
    parser.add_argument(
        "--model",
        default="smollm2",
        help="smollm2 (embedded, default), toy-trap, toy-random:V,L,seed, a folder or a hub id",
    )
    parser.add_argument(
        "--random-init", metavar="ARCH", help="randomly initialised model (e.g. tiny, llama-1b)"
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    parser.add_argument("--dtype", help="float32, bfloat16, float16 (default: per device)")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="allow a hub model's own code"
    )
    parser.add_argument(
        "--copy-on-write",
        action="store_true",
        help="share KV-cache rows between resampled duplicates until they diverge",
    )


def add_backend_arguments(
    parser: argparse._ActionsContainer,
    threads_help: str | None = None,
    threads_type: Callable[[str], object] = int,
) -> None:
    """--backend torch|llamacpp|auto (default auto) and --threads N (``threads_type``
    parses it: the bench takes a comma-separated list)."""
    from powersmc_core.models.backends import BACKENDS

    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="engine: torch, llamacpp (GGUF models on CPU; install with `make fast`) or "
        "auto (default: llama.cpp for a GGUF model on the CPU when installed, else torch)",
    )
    parser.add_argument(
        "--threads",
        type=threads_type,
        help=threads_help
        or "CPU threads (default: $POWERSMC_THREADS, else $OMP_NUM_THREADS, else "
        "min(4, usable CPUs) for llama.cpp; torch keeps its own setting)",
    )


def check_threads(args: argparse.Namespace) -> int | None:
    """--threads as given (None when absent); refuses a count below 1."""
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    return threads


def load_model_from_args(args: argparse.Namespace) -> LanguageModel:
    """--model / --random-init / --device / --dtype / --backend -> a model behind the protocol.

    The model carries ``.backend`` ("torch" | "llamacpp") and ``.backend_reason`` (one
    line: why that backend; auto says when it fell back to torch).
    """
    from powersmc_core.models import loading
    from powersmc_core.models.backends import load_model_with_backend, tag_backend

    backend = getattr(args, "backend", "auto")
    threads = check_threads(args)
    random_init = getattr(args, "random_init", None)
    if random_init:
        if backend == "llamacpp":
            raise ValueError("--random-init builds a torch model: use --backend torch or auto")
        model = loading.random_init_model(
            random_init, device=args.device, dtype=args.dtype, seed=getattr(args, "seed", 0)
        )
        return tag_backend(model, "torch", "random initialisation: torch")
    return load_model_with_backend(
        args.model,
        backend,
        threads=threads,
        device=args.device,
        dtype=args.dtype,
        n_particles=getattr(args, "n_particles", None),  # auto looks its timings up at N
        trust_remote_code=getattr(args, "trust_remote_code", False),
        copy_on_write=getattr(args, "copy_on_write", False),
    )


def parse_prompt(model: LanguageModel, text: str | None, raw: bool = False) -> list[int]:
    """--prompt -> token ids (``prompts.encode_prompt``); toy models read names or ids."""
    if not isinstance(model, ToyLM) and (text is None or not text.strip()):
        raise ValueError("the prompt is empty: pass --prompt TEXT")
    return encode_prompt(model, text, chat=not raw)


def check_writable(path: str | os.PathLike[str], flag: str) -> None:
    """Fail before any decoding if ``path`` cannot be written (not after minutes of work)."""
    target = Path(path)
    if str(path) == "" or target.is_dir():
        raise ValueError(f"{flag}: {path!s} is a directory, not a file path")
    parent = target.parent
    while not parent.exists():  # write_trace creates missing folders; check the first real one
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ValueError(f"{flag}: cannot write {path!s} ({parent} is not a writable folder)")
    if target.exists() and not os.access(target, os.W_OK):
        raise ValueError(f"{flag}: cannot write {path!s} (file is read-only)")
