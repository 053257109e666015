"""Model backends behind one protocol (see ``base.LanguageModel``)."""

from .base import LanguageModel, ModelState
from .toy import ToyLM

__all__ = ["LanguageModel", "ModelState", "ToyLM"]
