"""Model choices for the picker and cached loading (one instance per name and backend).

``load_cached`` is the only way the app loads a model:
``models.backends.load_model_with_backend``, whose instances the library's one cache
shares between sessions, one per (name, backend). ``model_choices`` lists the embedded
model and the toy models; ``token_labeler`` names token ids for hover texts.

Backends (the sidebar's picker): ``BACKEND_LABELS`` (auto / torch / llama.cpp);
``default_backend()`` is ``$POWERSMC_BACKEND`` or auto (a demo server's only choice);
``backend_caption(model)`` says which backend ran and why; ``fast_backend_hint()`` is
the one-line suggestion (``make fast``) when llama.cpp is not installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from explorer.inputs import escape_markdown
from explorer.settings import demo_settings
from powersmc_core.models.backends import (
    BACKENDS,
    backend_of,
    choose_backend,
    llamacpp_available,
    load_model_with_backend,
)
from powersmc_core.models.base import LanguageModel
from powersmc_core.models.loading import (
    DEFAULT_MODEL,
    ModelLoadError,
    available_models,
)
from powersmc_core.models.toy import ToyLM

__all__ = [
    "BACKEND_ENV",
    "BACKEND_LABELS",
    "DEFAULT_MODEL",
    "ModelLoadError",
    "backend_caption",
    "custom_models_allowed",
    "default_backend",
    "fast_backend_hint",
    "is_toy",
    "load_cached",
    "load_failure",
    "model_choices",
    "planned_backend",
    "token_labeler",
]

CUSTOM_MODEL_ENV = "POWERSMC_ALLOW_CUSTOM_MODELS"
BACKEND_ENV = "POWERSMC_BACKEND"
# The library's backend names, as the picker shows them.
BACKEND_LABELS = {name: {"llamacpp": "llama.cpp"}.get(name, name) for name in BACKENDS}


def default_backend() -> str:
    """``$POWERSMC_BACKEND`` (torch, llamacpp or auto), else auto.

    Raises ``ModelLoadError`` naming the valid values for anything else.
    """
    value = os.environ.get(BACKEND_ENV, "").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ModelLoadError(
            f"{BACKEND_ENV}={value!r} is not a backend: set it to one of {', '.join(BACKENDS)}"
        )
    return value


def fast_backend_hint() -> str | None:
    """None when llama.cpp imports, else one line suggesting ``make fast``."""
    available, detail = llamacpp_available()
    if available:
        return None
    return f"The fast CPU backend (llama.cpp) is not available: {detail}."


def planned_backend(name: str, backend: str) -> str:
    """'Backend: llama.cpp (why)' for ``name`` before loading it (no model is loaded)."""
    try:
        choice = choose_backend(name, backend)
    except (ModelLoadError, ValueError) as err:
        return f"Backend: unavailable ({err})"
    return f"Backend: {BACKEND_LABELS[choice.name]} ({choice.reason})"


def backend_caption(model: LanguageModel) -> str:
    """'Backend: llama.cpp (why)': which engine runs ``model`` (toy models: torch)."""
    backend = backend_of(model)[0]
    reason = getattr(model, "backend_reason", None)  # untagged (toy) models: no reason shown
    label = BACKEND_LABELS.get(backend, backend)
    return f"Backend: {label}" + (f" ({reason})" if reason else "")


def custom_models_allowed() -> bool:
    """Hub ids and local folders in the picker unless POWERSMC_ALLOW_CUSTOM_MODELS=0."""
    if os.environ.get(CUSTOM_MODEL_ENV, "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    return not demo_settings().enabled  # demo mode never offers free-form model names


def model_choices() -> dict[str, str]:
    """Picker entries name -> description: the embedded model and the toy models."""
    choices = {
        m["name"]: m["description"] for m in available_models() if m["kind"] in ("embedded", "toy")
    }
    choices.setdefault(
        "toy-random:3,8,0", "random enumerable toy: tokens a, b and EOS, up to 8 tokens (exact)"
    )
    return choices


def load_cached(name: str, backend: str | None = None) -> LanguageModel:
    """``load_model_with_backend(name, backend)``: one instance per (name, backend) per
    server, from the library's one model-instance cache (``models.instances.shared``),
    so every session shares it. ``backend`` None: ``default_backend()``.

    Raises ``ModelLoadError`` (a message the user can act on) for an unknown name, or
    for llama.cpp asked for but unable to run (auto falls back to torch instead).
    """
    name = (name or "").strip()
    if not name:
        raise ModelLoadError("no model name given: pick a model in the sidebar")
    chosen = default_backend() if backend is None else backend
    if chosen not in BACKENDS:
        raise ModelLoadError(f"unknown backend {chosen!r}: pick one of {', '.join(BACKENDS)}")
    return load_model_with_backend(name, chosen)


def load_failure(name: str, err: Exception) -> str:
    """What a page shows when ``load_cached(name)`` fails: one line, Markdown-escaped."""
    return f"Could not load model {escape_markdown(repr(name))}: {escape_markdown(err)}"


def is_toy(model: LanguageModel) -> bool:
    return isinstance(model, ToyLM)


def token_labeler(model: LanguageModel) -> Callable[[int], str]:
    """token id -> its text, memoised (hover text decodes thousands of cells)."""
    if isinstance(model, ToyLM):
        return model.token_name
    cache: dict[int, str] = {}

    def label(token: int) -> str:
        if token not in cache:
            cache[token] = model.decode_batch([[token]])[0]
        return cache[token]

    return label
