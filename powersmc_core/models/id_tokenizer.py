"""``IdTokenizer``: the tokenizer of models that ship none (random-init, bare folders).

Token ``i`` renders as ``"<i>"``. ``encode`` parses ``"<i>"`` runs back to ids and maps
any other character to its UTF-8 bytes offset past the special ids (mod the
vocabulary), so any text gives some valid prompt; only ``<i>`` text round-trips.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["IdTokenizer", "id_tokenizer_for"]


class IdTokenizer:
    """Minimal tokenizer for models without one: token ``i`` renders as ``"<i>"``."""

    chat_template = None
    _ID = re.compile(r"<(\d+)>")

    def __init__(self, vocab_size: int, eos_token_id: int, bos_token_id: int | None = None):
        self.vocab_size = vocab_size
        self.eos_token_id = eos_token_id
        self.bos_token_id = bos_token_id
        self.pad_token_id = eos_token_id
        self.eos_token = f"<{eos_token_id}>"
        self.name_or_path = "id-tokenizer"
        self._offset = max(eos_token_id, bos_token_id or 0) + 1

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, add_special_tokens: bool = True, **_: Any) -> list[int]:
        ids: list[int] = []
        pos = 0
        for match in self._ID.finditer(text):
            ids += self._bytes(text[pos : match.start()])
            ids.append(int(match.group(1)) % self.vocab_size)
            pos = match.end()
        ids += self._bytes(text[pos:])
        if add_special_tokens and self.bos_token_id is not None:
            ids.insert(0, self.bos_token_id)
        return ids

    def _bytes(self, text: str) -> list[int]:
        span = self.vocab_size - self._offset
        return [self._offset + b % span for b in text.encode("utf-8")]

    def __call__(self, text: str, **kwargs: Any) -> dict[str, list[int]]:
        ids = self.encode(text, **kwargs)
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}

    def decode(self, ids: Sequence[int] | Any, **_: Any) -> str:
        return "".join(f"<{int(t)}>" for t in _as_list(ids))

    def batch_decode(self, sequences: Sequence[Sequence[int]] | Any, **kwargs: Any) -> list[str]:
        return [self.decode(seq, **kwargs) for seq in sequences]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        if isinstance(ids, int):
            return f"<{ids}>"
        return [f"<{int(t)}>" for t in ids]

    def apply_chat_template(self, messages: Sequence[dict[str, str]], **kwargs: Any) -> Any:
        """No template: the concatenated message contents (tokenised unless tokenize=False)."""
        text = "\n".join(m["content"] for m in messages)
        return text if kwargs.get("tokenize", True) is False else self.encode(text)


def _as_list(ids: Any) -> list[int]:
    return ids.tolist() if hasattr(ids, "tolist") else list(ids)


def id_tokenizer_for(config: Any) -> IdTokenizer:
    """An ``IdTokenizer`` for a transformers config (its vocabulary, EOS and BOS ids)."""
    eos = config.eos_token_id
    eos = eos[0] if isinstance(eos, (list, tuple)) else eos
    return IdTokenizer(
        config.vocab_size, eos if eos is not None else 0, getattr(config, "bos_token_id", None)
    )
