"""Incremental per-particle detokenisation for streaming.

Decoding a whole sequence every step costs O(T) per token; instead each
particle keeps two offsets into its ids (as text-generation servers do): the
text of ids[prefix:read] is already emitted, and a new piece is the extra text
of ids[prefix:] once it no longer ends in an incomplete UTF-8 character. Both windows
of all growing particles are decoded in one ``decode_batch`` call each per step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["ParticleTexts"]

DecodeBatch = Callable[[Sequence[Sequence[int]]], list[str]]


class ParticleTexts:
    """Texts of N particles, grown one token at a time and reordered on resampling."""

    def __init__(self, decode_batch: DecodeBatch, n: int) -> None:
        self._decode = decode_batch
        self.ids: list[list[int]] = [[] for _ in range(n)]
        self.texts: list[str] = ["" for _ in range(n)]
        self._prefix = [0] * n
        self._read = [0] * n

    def push(self, tokens: Sequence[int], grows: Sequence[bool]) -> list[str]:
        """Append tokens[i] to every particle with grows[i]; return the new text pieces.

        Host lists, not tensors: the sampler's flush has them already.
        """
        rows = [i for i, grow in enumerate(grows) if grow]
        pieces = ["" for _ in self.texts]
        if not rows:
            return pieces
        for i in rows:
            self.ids[i].append(tokens[i])
        before = self._decode([self.ids[i][self._prefix[i] : self._read[i]] for i in rows])
        after = self._decode([self.ids[i][self._prefix[i] :] for i in rows])
        for i, old, new in zip(rows, before, after, strict=True):
            if len(new) > len(old) and not new.endswith("\ufffd"):
                piece = new[len(old) :]
                pieces[i] = piece
                self.texts[i] += piece
                self._prefix[i] = self._read[i]
                self._read[i] = len(self.ids[i])
        return pieces

    def reorder(self, ancestors: Sequence[int]) -> None:
        self.ids = [list(self.ids[a]) for a in ancestors]
        self.texts = [self.texts[a] for a in ancestors]
        self._prefix = [self._prefix[a] for a in ancestors]
        self._read = [self._read[a] for a in ancestors]
