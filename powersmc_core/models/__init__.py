"""Model backends behind one protocol (see ``base.LanguageModel``).

Importing this package does not import transformers; ``loading`` does so lazily.
"""

from .base import LanguageModel, ModelState
from .loading import (
    DEFAULT_MODEL,
    ModelLoadError,
    ModelNameError,
    ModelSpec,
    available_models,
    load_model,
    parse_model_name,
    random_init_model,
)
from .toy import ToyLM

__all__ = [
    "DEFAULT_MODEL",
    "LanguageModel",
    "ModelLoadError",
    "ModelNameError",
    "ModelSpec",
    "ModelState",
    "ToyLM",
    "available_models",
    "load_model",
    "parse_model_name",
    "random_init_model",
]
