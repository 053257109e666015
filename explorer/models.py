"""Model choices for the picker and cached loading (one instance per name per server).

``load_cached`` is the only way the app loads a model: ``models.loading.load_model``,
whose instances the library's one cache shares between sessions. ``model_choices`` lists the
embedded model and the toy models; ``token_labeler`` names token ids for hover texts.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from powersmc_core.models.base import LanguageModel
from powersmc_core.models.loading import (
    DEFAULT_MODEL,
    ModelLoadError,
    available_models,
    load_model,
)
from powersmc_core.models.toy import ToyLM

from .settings import demo_settings

__all__ = [
    "DEFAULT_MODEL",
    "ModelLoadError",
    "custom_models_allowed",
    "is_toy",
    "load_cached",
    "model_choices",
    "token_labeler",
]

CUSTOM_MODEL_ENV = "POWERSMC_ALLOW_CUSTOM_MODELS"


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


def load_cached(name: str) -> LanguageModel:
    """``load_model(name)``: one instance per name per server, from the library's one
    model-instance cache (``models.instances.shared``), so every session shares it.

    Raises ``ModelLoadError`` (a message the user can act on) for an unknown name.
    """
    name = (name or "").strip()
    if not name:
        raise ModelLoadError("no model name given: pick a model in the sidebar")
    return load_model(name)


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
