"""What a model load reports: the error a user can fix, and how the model was produced.

``ModelLoadError`` carries one line saying what to install or check (the underlying
exception stays as ``__cause__``); ``ModelNameError`` is the subset raised before
anything is loaded, because the name itself is wrong (it is also a ``ValueError``, so
settings validation can catch it with the other bad inputs). ``LoadInfo`` and
``CacheInfo`` are attached to transformer-backed models as ``.load_info``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CacheInfo", "LoadInfo", "ModelLoadError", "ModelNameError", "require"]


class ModelLoadError(RuntimeError):
    """A model could not be loaded for a reason the user can fix; the message says how."""


class ModelNameError(ModelLoadError, ValueError):
    """The model name itself is invalid (raised by ``parse_model_name``, before any load)."""


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


PIP = {
    "transformers": "pip install transformers==5.24.0",
    "gguf": "pip install gguf==0.19.0",
    "accelerate": "pip install accelerate==1.15.0",
    "torch": "pip install torch (see requirements.txt for the pinned CPU build)",
}


def require(*packages: str) -> None:
    """Raise ``ModelLoadError`` naming the pip command for the first missing package."""
    for package in packages:
        if importlib.util.find_spec(package) is None:
            raise ModelLoadError(f"package {package!r} is missing: {PIP[package]}")
