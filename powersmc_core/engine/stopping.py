"""Text stop rules, checked incrementally on each particle's new text only.

A rule keeps O(1) state per particle (a carried tail, a brace depth), so the
cost per step is proportional to the new text, never to the whole sequence.
EOS is handled by the sampler from token ids; these rules cover text.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["BoxedAnswer", "StopRule", "StopStrings", "make_stop_rule"]


class StopRule:
    """Stateful per-particle text rule: ``update`` returns which particles just stopped."""

    def reset(self, n: int) -> None:
        raise NotImplementedError

    def update(self, pieces: Sequence[str]) -> list[bool]:
        raise NotImplementedError

    def reorder(self, ancestors: Sequence[int]) -> None:
        raise NotImplementedError


class StopStrings(StopRule):
    """Stop when the text contains any of the given strings (which may straddle pieces)."""

    def __init__(self, stops: Sequence[str]) -> None:
        stops = [s for s in stops if s]
        if not stops:
            raise ValueError("StopStrings needs at least one non-empty stop string")
        self.stops = tuple(stops)
        self._keep = max(len(s) for s in self.stops) - 1
        self._tails: list[str] = []

    def reset(self, n: int) -> None:
        self._tails = ["" for _ in range(n)]

    def update(self, pieces: Sequence[str]) -> list[bool]:
        hits = []
        for i, piece in enumerate(pieces):
            window = self._tails[i] + piece
            hits.append(bool(piece) and any(s in window for s in self.stops))
            self._tails[i] = window[-self._keep :] if self._keep else ""
        return hits

    def reorder(self, ancestors: Sequence[int]) -> None:
        self._tails = [self._tails[a] for a in ancestors]


class BoxedAnswer(StopRule):
    r"""Stop once a non-empty ``\boxed{...}`` has been closed (nested braces allowed)."""

    OPEN = "\\boxed{"

    def reset(self, n: int) -> None:
        self._tails = ["" for _ in range(n)]  # carried text while looking for the opener
        self._depth = [0] * n  # > 0: inside the box
        self._content = [0] * n  # characters seen inside the box

    def update(self, pieces: Sequence[str]) -> list[bool]:
        return [self._scan(i, piece) for i, piece in enumerate(pieces)]

    def _scan(self, i: int, piece: str) -> bool:
        text = piece
        while text:
            if self._depth[i] == 0:
                window = self._tails[i] + text
                at = window.find(self.OPEN)
                if at < 0:
                    self._tails[i] = window[-(len(self.OPEN) - 1) :]
                    return False
                self._tails[i] = ""
                self._depth[i], self._content[i] = 1, 0
                text = window[at + len(self.OPEN) :]
                continue
            for k, char in enumerate(text):
                if char == "{":
                    self._depth[i] += 1
                elif char == "}":
                    self._depth[i] -= 1
                    if self._depth[i] == 0:
                        if self._content[i] > 0:
                            return True
                        text = text[k + 1 :]  # empty box: keep looking for another
                        break
                if not char.isspace():
                    self._content[i] += 1
            else:
                return False
        return False

    def reorder(self, ancestors: Sequence[int]) -> None:
        self._tails = [self._tails[a] for a in ancestors]
        self._depth = [self._depth[a] for a in ancestors]
        self._content = [self._content[a] for a in ancestors]


class _AnyOf(StopRule):
    def __init__(self, rules: Sequence[StopRule]) -> None:
        self.rules = list(rules)

    def reset(self, n: int) -> None:
        for rule in self.rules:
            rule.reset(n)

    def update(self, pieces: Sequence[str]) -> list[bool]:
        results = [rule.update(pieces) for rule in self.rules]
        return [any(col) for col in zip(*results, strict=True)]

    def reorder(self, ancestors: Sequence[int]) -> None:
        for rule in self.rules:
            rule.reorder(ancestors)


def make_stop_rule(stop_strings: Sequence[str] = (), boxed: bool = False) -> StopRule | None:
    """Combine user stop strings and the ``\\boxed{}`` rule; None when there is nothing to check."""
    rules: list[StopRule] = []
    if any(stop_strings):
        rules.append(StopStrings(stop_strings))
    if boxed:
        rules.append(BoxedAnswer())
    if not rules:
        return None
    return rules[0] if len(rules) == 1 else _AnyOf(rules)
