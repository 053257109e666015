"""Model loading: one name in, one shared ``LanguageModel`` out.

``load_model(name)`` parses the name with THE parser (``names.parse_model_name``: the
embedded ``smollm2``, ``toy-trap``, ``toy-random[:V,L,seed]``, ``random:<arch>``, a
local folder or ``.gguf`` file, a hub id), then builds the model once per process
per (name, device, dtype, options) through THE instance cache (``instances.shared``).
The jobs live in sibling modules, re-exported here so ``powersmc_core.models.loading``
keeps its public names:

- ``names``: the parser and the picker's built-in list;
- ``instances``: the per-process instance cache;
- ``gguf_cache``: the embedded/GGUF model dequantised once into a safetensors cache;
- ``random_init``: random weights with real dimensions (benchmarks);
- ``id_tokenizer``: ``<id>`` tokens for models without a tokenizer;
- ``runtime``: device/dtype choice, reading a folder, wrapping into ``HFModel``;
- ``errors``: ``ModelLoadError`` (one line saying what to install or check, the cause
  kept as ``__cause__``), ``LoadInfo``/``CacheInfo`` (attached as ``.load_info``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from powersmc_core.models.base import LanguageModel
from powersmc_core.models.errors import CacheInfo, LoadInfo, ModelLoadError, ModelNameError, require
from powersmc_core.models.gguf_cache import (
    CACHE_ENV,
    CACHE_FORMAT,
    EMBEDDED_SLUG,
    MARKER,
    SMOLLM2_CHAT_TEMPLATE,
    cache_root,
    embedded_gguf_path,
    gguf_cache_slug,
    load_gguf,
    prepare_gguf_cache,
)
from powersmc_core.models.id_tokenizer import IdTokenizer
from powersmc_core.models.instances import clear_model_cache, shared
from powersmc_core.models.names import (
    DEFAULT_MODEL,
    ModelSpec,
    available_models,
    builtin_names,
    parse_model_name,
)
from powersmc_core.models.random_init import RANDOM_INIT_CONFIGS, random_init_model
from powersmc_core.models.runtime import (
    attach,
    from_folder,
    hub_offline,
    resolve_device_dtype,
    to_device,
    wrap,
)
from powersmc_core.models.toy import ToyLM

if TYPE_CHECKING:
    import torch

__all__ = [
    "CACHE_ENV",
    "CACHE_FORMAT",
    "DEFAULT_MODEL",
    "EMBEDDED_SLUG",
    "MARKER",
    "RANDOM_INIT_CONFIGS",
    "SMOLLM2_CHAT_TEMPLATE",
    "CacheInfo",
    "IdTokenizer",
    "LoadInfo",
    "ModelLoadError",
    "ModelNameError",
    "ModelSpec",
    "available_models",
    "cache_root",
    "clear_model_cache",
    "embedded_gguf_path",
    "gguf_cache_slug",
    "load_model",
    "load_spec",
    "parse_model_name",
    "prepare_gguf_cache",
    "random_init_model",
]


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    copy_on_write: bool = False,
) -> LanguageModel:
    """Resolve ``name`` (see ``names.parse_model_name``) to a shared ``LanguageModel``.

    ``device``/``dtype`` default to CUDA > MPS > CPU and float32 on CPU, bfloat16 on
    CUDA; toy models ignore both (they are CPU tables).
    """
    spec = parse_model_name(name)
    if spec.kind == "toy":
        return shared(("toy", spec.name), lambda: _load_toy(spec))
    torch_device, torch_dtype = resolve_device_dtype(device, dtype)
    key = (spec.name, str(torch_device), str(torch_dtype), trust_remote_code, copy_on_write)
    return shared(
        key,
        lambda: load_spec(
            spec,
            device=torch_device,
            dtype=torch_dtype,
            trust_remote_code=trust_remote_code,
            copy_on_write=copy_on_write,
        ),
    )


def load_spec(
    spec: ModelSpec,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    trust_remote_code: bool = False,
    copy_on_write: bool = False,
) -> LanguageModel:
    """Build the model a parsed name describes, uncached (``load_model`` shares it)."""
    if spec.kind == "toy":
        return _load_toy(spec)
    torch_device, torch_dtype = resolve_device_dtype(device, dtype)
    if spec.kind == "embedded":
        return load_gguf(
            embedded_gguf_path(),
            EMBEDDED_SLUG,
            DEFAULT_MODEL,
            "embedded",
            torch_device,
            torch_dtype,
            copy_on_write,
        )
    if spec.kind == "random-init":
        return random_init_model(str(spec.arch), device=torch_device, dtype=torch_dtype)
    if spec.kind == "gguf":
        path = Path(spec.path or spec.name)
        slug = gguf_cache_slug(path)
        return load_gguf(path, slug, path.stem, "gguf", torch_device, torch_dtype, copy_on_write)
    where = str(spec.path) if spec.path is not None else spec.name
    return _load_pretrained(
        where, spec.kind, torch_device, torch_dtype, trust_remote_code, copy_on_write
    )


def _load_toy(spec: ModelSpec) -> LanguageModel:
    if spec.family == "toy-trap":
        return ToyLM.trap()
    if spec.family == "toy-pivotal" and spec.toy_args is not None:
        return ToyLM.pivotal(spec.toy_args[0])
    if spec.toy_args is None:
        return ToyLM.random()
    vocab, max_len, seed = spec.toy_args
    try:
        return ToyLM.random(vocab_size=vocab, max_len=max_len, seed=seed)
    except ValueError as err:
        raise ModelLoadError(f"bad toy model {spec.name!r}: {err}") from err


def _load_pretrained(
    name_or_path: str,
    kind: str,
    device: torch.device,
    dtype: torch.dtype,
    trust_remote_code: bool,
    copy_on_write: bool,
) -> LanguageModel:
    """A save_pretrained folder (``kind="folder"``) or a hub id (``"hub"``)."""
    require("transformers")
    start = time.perf_counter()
    local_only = kind == "folder" or hub_offline()
    try:
        hf_model, tokenizer = from_folder(
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
                f"could not load {name_or_path!r}: not a built-in name ({builtin_names()}), "
                f"not a local folder, and the hub is unreachable or the id is wrong{offline}"
            )
        if "trust_remote_code" in str(err) and not trust_remote_code:
            message += "; it needs custom code: pass trust_remote_code=True if you trust it"
        raise ModelLoadError(message) from err
    notes = []
    if isinstance(tokenizer, IdTokenizer):
        notes.append("no tokenizer found: tokens are shown as <id>")
    short = Path(name_or_path).name or name_or_path
    model = wrap(to_device(hf_model, device, short), tokenizer, short, copy_on_write)
    seconds = time.perf_counter() - start
    attach(model, LoadInfo(name_or_path, kind, kind, seconds, name_or_path, tuple(notes)))
    return model
