"""THE prompt-encoding path: text (or token ids) in, validated prompt ids out.

Every consumer (the CLI, the bench, the evaluation harness, the app) turns a user's
prompt into token ids with ``encode_prompt(model, text_or_ids, chat, max_tokens)``:

- token ids (a sequence of ints) are checked against the vocabulary and returned;
- a toy model (``ToyLM``) reads token names or ids, space- or comma-separated
  (``"A B"``, ``"0,1"``; ``""`` is the empty prefix), and checks the length;
- any other model needs text and a tokenizer (the backend's ``encode_prompt`` hook:
  the chat template with a generation prompt when ``chat`` and the model has one).

``max_tokens`` bounds the result (a deployment's prompt cap); the backend's own
limit (its context minus room to generate) applies too. Every problem raises
``ValueError`` with a message that says what to change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from powersmc_core.models.base import LanguageModel
from powersmc_core.models.toy import ToyLM

__all__ = ["encode_prompt"]


def encode_prompt(
    model: LanguageModel,
    text_or_ids: str | Sequence[int] | None,
    chat: bool = True,
    max_tokens: int | None = None,
) -> list[int]:
    """Prompt ids for ``model``; see the module docstring for what each model reads."""
    if text_or_ids is not None and not isinstance(text_or_ids, str):
        ids = _checked_ids(model, text_or_ids)
    elif isinstance(model, ToyLM):
        ids = _toy_ids(model, text_or_ids or "")
    else:
        ids = _text_ids(model, text_or_ids, chat, max_tokens)
    if max_tokens is not None and len(ids) > max_tokens:
        raise ValueError(
            f"prompt has {len(ids)} tokens, more than the limit of {max_tokens}; shorten it"
        )
    return ids


def _checked_ids(model: LanguageModel, values: Sequence[Any]) -> list[int]:
    ids = []
    for value in values:
        if isinstance(value, bool) or not float(value).is_integer():
            raise ValueError(f"prompt token ids must be integers, got {value!r}")
        ids.append(int(value))
    bad = [t for t in ids if not 0 <= t < model.vocab_size]
    if bad:
        raise ValueError(f"prompt token ids must be in [0, {model.vocab_size}), got {bad[:5]}")
    if isinstance(model, ToyLM):
        model.next_token_logprobs(ids)  # validates the length against the toy's max_len
    return ids


def _toy_ids(model: ToyLM, text: str) -> list[int]:
    ids = []
    for item in text.replace(",", " ").split():
        if item in model.token_names:
            ids.append(model.token_names.index(item))
        elif item.lstrip("-").isdigit():
            ids.append(int(item))
        else:
            names = ", ".join(model.token_names[:-1])
            raise ValueError(f"unknown token {item!r} for {model.name}; tokens are {names}")
    model.next_token_logprobs(ids)  # validates ids and length (raises ValueError)
    return ids


def _text_ids(
    model: LanguageModel, text: str | None, chat: bool, max_tokens: int | None
) -> list[int]:
    if text is None or not text.strip():
        raise ValueError("the prompt is empty: pass some text")
    encode = getattr(model, "encode_prompt", None)
    if encode is None:
        raise ValueError(f"model {model.name!r} has no tokenizer to encode a text prompt")
    ids = list(encode(text, chat=chat, max_prompt_tokens=max_tokens))
    if not ids:
        raise ValueError("the prompt encodes to no tokens")
    return ids
