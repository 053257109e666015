"""Model backends behind one protocol (see ``base.LanguageModel``).

Importing this package does not import transformers; ``loading`` does so lazily.
"""

from powersmc_core.models.base import LanguageModel, ModelState
from powersmc_core.models.loading import (
    DEFAULT_MODEL,
    ModelLoadError,
    ModelNameError,
    ModelSpec,
    available_models,
    load_model,
    parse_model_name,
    random_init_model,
)
from powersmc_core.models.toy import ToyLM

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
