"""THE model-instance cache: one shared ``LanguageModel`` per key per process.

Every consumer (``load_model``, the CLI, the evaluation harness, the app) shares
models through ``shared(key, build)``: a model is built once per key (name, device,
dtype, options) and reused. A lock per key stops two threads (e.g. two Streamlit
sessions) building the same model twice, without making a toy load wait behind a
20 s conversion of another model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

from powersmc_core.models.base import LanguageModel

__all__ = ["cached_keys", "clear_model_cache", "shared"]

_INSTANCES: dict[Hashable, LanguageModel] = {}
_KEY_LOCKS: dict[Hashable, threading.Lock] = {}
_INSTANCES_LOCK = threading.Lock()


def shared(key: Hashable, build: Callable[[], LanguageModel]) -> LanguageModel:
    """The instance cached under ``key``, built by ``build()`` on first use."""
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


def cached_keys() -> list[Hashable]:
    """Keys of the instances held now (for diagnostics and tests)."""
    with _INSTANCES_LOCK:
        return list(_INSTANCES)


def clear_model_cache() -> None:
    """Forget every shared instance (tests, or to free memory)."""
    with _INSTANCES_LOCK:
        _INSTANCES.clear()
