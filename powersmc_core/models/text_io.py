"""Text in and out of a tokenizer-backed model, shared by every backend.

The torch backend (``models.hf``) and the llama.cpp backend (``models.llamacpp``) run
the same Hugging Face tokenizer, so they must turn text into prompt ids and ids
back into text identically: this module holds that once, and neither backend
borrows from the other. Standard library only (the tokenizer is duck-typed).

* ``TokenizerText``: a mixin giving ``encode_prompt`` (the chat template with a
  generation prompt when there is one), ``decode_batch`` and ``max_prompt_tokens``
  to a class with ``tokenizer``, ``config`` and ``name`` attributes.
* ``collect_eos_token_ids``: every end-of-sequence id a model stops on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["GENERATION_MARGIN", "TokenizerText", "collect_eos_token_ids", "prompt_limit"]

# Prompt tokens are limited to max_position_embeddings minus this many positions,
# so that a maximal prompt still leaves room for a completion.
GENERATION_MARGIN = 256


def prompt_limit(config: Any) -> int | None:
    """max_position_embeddings minus a margin for generation (None when unknown)."""
    max_positions = getattr(config, "max_position_embeddings", None)
    if not max_positions:
        return None
    return max_positions - min(GENERATION_MARGIN, max_positions // 2)


def collect_eos_token_ids(tokenizer: Any, generation_config: Any = None) -> tuple[int, ...]:
    """All end-of-sequence ids: tokenizer.eos_token_id first, then generation_config's (int or list)."""
    ids: list[int] = []
    candidates: list[Any] = [getattr(tokenizer, "eos_token_id", None)]
    extra = getattr(generation_config, "eos_token_id", None) if generation_config else None
    candidates.extend(extra if isinstance(extra, (list, tuple)) else [extra])
    for candidate in candidates:
        if candidate is not None and int(candidate) not in ids:
            ids.append(int(candidate))
    if not ids:
        raise ValueError(
            "neither the tokenizer nor the generation config defines an eos_token_id; "
            "set tokenizer.eos_token_id before wrapping the model"
        )
    return tuple(ids)


class TokenizerText:
    """Prompt encoding and decoding over ``self.tokenizer`` (a Hugging Face tokenizer).

    Needs ``tokenizer``, ``config`` (for ``max_position_embeddings``) and ``name``.
    """

    tokenizer: Any
    config: Any
    name: str

    @property
    def max_prompt_tokens(self) -> int | None:
        """Default prompt limit: max_position_embeddings minus a margin for generation."""
        return prompt_limit(self.config)

    def encode_prompt(
        self, text: str, chat: bool = True, max_prompt_tokens: int | None = None
    ) -> list[int]:
        """Prompt ids: the chat template with a generation prompt when there is one and chat=True."""
        if not text or not text.strip():
            raise ValueError("prompt is empty")
        if chat and getattr(self.tokenizer, "chat_template", None):
            rendered = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
            )
            # The template writes its own special tokens (BOS, role markers) as text.
            ids = list(self.tokenizer(rendered, add_special_tokens=False)["input_ids"])
        else:
            ids = list(self.tokenizer(text)["input_ids"])
        limit = self.max_prompt_tokens if max_prompt_tokens is None else max_prompt_tokens
        if limit is not None and len(ids) > limit:
            raise ValueError(
                f"prompt has {len(ids)} tokens, more than the limit of {limit} for {self.name}; "
                "shorten the prompt"
            )
        return ids

    def decode_batch(self, sequences: Sequence[Sequence[int]]) -> list[str]:
        """Texts of token sequences, special tokens (EOS, role markers) left out."""
        return self.tokenizer.batch_decode([list(s) for s in sequences], skip_special_tokens=True)
