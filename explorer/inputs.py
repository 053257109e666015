"""Input policy: everything a visitor types, picks or links, sanitised before any run.

Every function here either returns a usable value (plus notes to show) or raises
``InputError`` whose text is fit to show as it is; none lets a NaN, an infinity, a
control character or an arbitrary model path through:

- ``check_model_name``: the demo's allowlist (never a hub id or a path in demo mode);
- ``sanitize_prompt`` / ``encode_prompt``: NFC text without control characters or
  invisible ones (``strip_invisible``: zero-width, bidi marks, tags; a note says how many),
  tokenised under the demo's token cap; ``prompt_ids`` is the one entry for both a
  toy model's token prefix and an LLM's text;
- ``field_bounds`` / ``clamp_config``: the one table of numeric ranges (widgets and links
  read it), and an ``SMCConfig`` within it, one note per value changed, worded by
  ``range_message`` like the library's own errors ("N must be in [1, 32]; got 200;
  using 32"); which fields are ints, floats or names is read from ``SMCConfig``'s
  field metadata;
- ``clamp_rollouts``: the rollout methods' work per block boundary, N·K·M·H token
  forwards, under the mode's ``max_rollout_forwards`` (M, then H, then K lowered, a note
  each, in the same wording);
- ``make_stop``: a fresh stop rule from the page's choice and its stop strings;
- ``escape_markdown``: visitor or file text made inert inside ``st.markdown``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

from explorer.settings import (
    MAX_MODEL_NAME_CHARS,
    MAX_STOP_STRING_CHARS,
    MAX_STOP_STRINGS,
    DemoSettings,
)
from powersmc_core.engine.config import (
    EPSILON_MAX,
    ROLLOUT_H_MAX,
    ROLLOUT_K_MAX,
    ROLLOUT_M_MAX,
    SMCConfig,
    config_knobs,
    range_message,
)
from powersmc_core.engine.stopping import StopRule, make_stop_rule
from powersmc_core.models import prompts
from powersmc_core.models.errors import ModelNameError
from powersmc_core.models.names import EMBEDDED_NAMES, parse_model_name
from powersmc_core.models.toy import ToyLM

__all__ = [
    "FIELD_KINDS",
    "FIELD_LABELS",
    "FLOAT_FIELDS",
    "INT_FIELDS",
    "MAX_STOP_FIELD_CHARS",
    "MAX_STOP_STRINGS",
    "MAX_STOP_STRING_CHARS",
    "STOP_RULES",
    "InputError",
    "as_float",
    "as_int",
    "check_config",
    "check_model_name",
    "check_prompt_tokens",
    "clamp_config",
    "clamp_rollouts",
    "clean_stop_strings",
    "count",
    "encode_prompt",
    "escape_markdown",
    "field_bounds",
    "make_stop",
    "prompt_ids",
    "removed_note",
    "sanitize_prompt",
    "shown",
    "strip_invisible",
]


class InputError(ValueError):
    """Visitor input that cannot be used; the message is fit to show on the page."""


# ---- models ----------------------------------------------------------------------------------
def check_model_name(name: Any, settings: DemoSettings) -> str:
    """The canonical model name if ``settings`` allow it, else ``InputError``.

    In demo mode only the allowlist passes (``models.names.parse_model_name``'s families
    ``smollm2``, ``toy-trap``, ``toy-random``, bounded by ToyLM) — never a hub id or a
    path, so nobody can make the server import code or read its files. Other names are
    refused before parsing: the parser looks at the file system, a visitor may not.
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError("no model name given: pick a model in the sidebar")
    if len(name) > MAX_MODEL_NAME_CHARS:
        raise InputError("model name is too long")
    cleaned = name.strip()
    if _CONTROL.search(cleaned):
        raise InputError("model name contains control characters")
    if settings.allowed_models is None:
        return cleaned
    lowered = cleaned.lower()
    if lowered in EMBEDDED_NAMES or lowered.startswith("toy-"):
        try:
            spec = parse_model_name(lowered)
        except ModelNameError as err:
            raise InputError(str(err)) from None
        if spec.safe and spec.family in settings.allowed_models:
            return spec.name
    shown = cleaned if len(cleaned) <= 60 else cleaned[:57] + "…"
    raise InputError(
        f"model {shown!r} is not available in this demo; choose one of "
        f"{', '.join(settings.allowed_models)}"
    )


# ---- prompts ---------------------------------------------------------------------------------
# C0/C1 controls except tab and newline; bidi embedding/override/isolate controls (they can
# make displayed text read differently from what the model gets); BOM; lone surrogates
# (they cannot be UTF-8 encoded and would crash the tokenizer).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def _is_invisible(char: str) -> bool:
    code = ord(char)
    return (
        unicodedata.category(char) == "Cf"  # ZWSP, joiners, LRM/RLM, ALM, soft hyphen, BOM...
        or char in "\u2028\u2029"  # line/paragraph separators: a line break the eye misses
        or 0xE0000 <= code <= 0xE007F  # tag characters (ASCII smuggled invisibly)
    )


def strip_invisible(text: str) -> tuple[str, int]:
    """(``text`` without invisible formatting and bidi control characters, how many removed).

    Such characters (Unicode category Cf, U+2028/U+2029, tags U+E0000–E007F) make the text
    a visitor sees differ from what the model reads, or smuggle text past a reviewer; tabs
    and newlines are not among them and are kept.
    """
    if text.isascii():
        return text, 0
    kept = [c for c in text if not _is_invisible(c)]
    return "".join(kept), len(text) - len(kept)


def removed_note(removed: int, what: str) -> str:
    """The visitor's note that ``removed`` control or invisible characters left ``what``."""
    return (
        f"removed {removed} control or invisible character(s) from {what} (control codes, "
        "zero-width characters and joiners, direction marks, tags); the model gets the "
        "visible text"
    )


def sanitize_prompt(text: Any, max_chars: int) -> tuple[str, list[str]]:
    """(clean text, notes): NFC, CRLF -> LF, control and invisible characters removed
    (one note per kind, with the count), length checked.

    Raises ``InputError`` for a non-string, an empty prompt or one over ``max_chars``
    characters (the token limit is checked after tokenising, see ``check_prompt_tokens``).
    """
    if not isinstance(text, str):
        raise InputError("the prompt must be text")
    notes: list[str] = []
    if len(text) > max_chars:
        raise InputError(
            f"the prompt has {len(text):,} characters; the limit is {max_chars:,}. Shorten it."
        )
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    cleaned, removed = _CONTROL.subn("", text)
    cleaned, invisible = strip_invisible(cleaned)
    if removed + invisible:
        notes.append(removed_note(removed + invisible, "the prompt"))
    cleaned = unicodedata.normalize("NFC", cleaned).strip()
    if not cleaned:
        raise InputError("the prompt is empty: type a prompt or pick a preset problem")
    return cleaned, notes


def check_prompt_tokens(n_tokens: int, settings: DemoSettings) -> None:
    """``InputError`` when a tokenised prompt is over the demo's token limit."""
    limit = settings.max_prompt_tokens
    if limit is not None and n_tokens > limit:
        raise InputError(
            f"the prompt is {n_tokens} tokens long; this demo accepts at most {limit} tokens. "
            "Shorten it."
        )


def encode_prompt(model: Any, text: Any, settings: DemoSettings, chat: bool = True) -> list[int]:
    """Sanitise ``text`` and tokenise it under the demo's token limit (text models only),
    through the library's one prompt-encoding path (``powersmc_core.models.prompts``)."""
    cleaned, _ = sanitize_prompt(text, settings.max_prompt_chars)
    if isinstance(model, ToyLM) or getattr(model, "encode_prompt", None) is None:
        raise InputError(f"model {getattr(model, 'name', '?')!r} takes a token prefix, not text")
    try:
        ids = prompts.encode_prompt(
            model, cleaned, chat=chat, max_tokens=settings.max_prompt_tokens
        )
    except ValueError as err:  # the backend's own limit, the cap, or an empty prompt
        raise InputError(str(err)) from None
    check_prompt_tokens(len(ids), settings)
    return ids


def escape_markdown(text: str, max_chars: int = 500) -> str:
    """Text from a visitor or an uploaded file, safe inside ``st.markdown``.

    Markdown in such text could render links or remote images (which would leak every
    viewer's address to the image host), so markdown syntax characters are escaped.
    """
    text, _ = strip_invisible(_CONTROL.sub("", str(text)))
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", text)


# ---- sampler settings ------------------------------------------------------------------------
# Which fields are ints, floats or names, and which may be None: SMCConfig's own field
# metadata (``config_knobs``), not a table kept here.
_KNOBS = config_knobs()
FIELD_KINDS = {name: "str" if k.kind == "choice" else k.kind for name, k in _KNOBS.items()}
FLOAT_FIELDS = tuple(n for n, k in FIELD_KINDS.items() if k == "float")
INT_FIELDS = tuple(n for n, k in FIELD_KINDS.items() if k == "int")


FIELD_LABELS = {
    "n_particles": "N",
    "max_new_tokens": "max new tokens",
    "alpha": "α",
    "alpha_start": "α start",
    "ess_threshold": "κ",
    "target_ess": "target ESS/N",
    "ramp_tokens": "ramp tokens",
    "block_size": "block size",
    "seed": "seed",
    "proposal_temperature": "proposal τ",
    "chopthin_eta": "chopthin η",
    "rollout_k": "K candidates",
    "rollout_m": "M rollouts",
    "rollout_h": "H depth",
    "lookahead_epsilon": "look-ahead ε",
}


def count(n: int, noun: str) -> str:
    """'1 step', '2 steps': a count with its noun in the right number."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def field_bounds(settings: DemoSettings) -> dict[str, tuple[Any, Any]]:
    """The ONE table of ranges for the numeric ``SMCConfig`` fields under ``settings``.

    ``clamp_config`` (hence the gate and every link) clamps to it, and every numeric
    widget (``page_kit.knob_input``) is drawn with exactly this range as its min/max, so
    the value on screen is the value that runs and no clamped value is outside a widget's
    range (which Streamlit would reset to the default without a word).
    Int fields have int bounds, float fields float bounds (a widget keeps one type).
    """
    tokens = max(1, settings.max_new_tokens)
    return {
        "n_particles": (1, settings.max_particles),
        "max_new_tokens": (1, tokens),
        "alpha": (float(settings.alpha_min), float(settings.alpha_max)),
        "alpha_start": (float(settings.alpha_min), float(settings.alpha_max)),
        "ess_threshold": (0.0, 1.0),
        # Below 5% of N the adaptive schedule would hold α_t at almost nothing per step.
        "target_ess": (0.05, 1.0),
        "ramp_tokens": (1, tokens),
        "block_size": (1, tokens),
        "seed": (0, 2**31 - 1),
        "proposal_temperature": (0.01, 100.0),
        # Gandy & Lau's bound needs η >= 4; past ~1e3 chopthin is plain thinning of the tail.
        "chopthin_eta": (4.0, 1000.0),
        # The rollout methods' K, M, H (None: the method's defaults); their product with N
        # is bounded per boundary by ``clamp_rollouts`` (settings.max_rollout_forwards).
        "rollout_k": (1, ROLLOUT_K_MAX),
        "rollout_m": (1, ROLLOUT_M_MAX),
        "rollout_h": (1, min(ROLLOUT_H_MAX, tokens)),
        "lookahead_epsilon": (0.0, EPSILON_MAX),
    }


def check_config(requested: Mapping[str, Any], settings: DemoSettings) -> None:
    """``InputError`` for settings no cap can fix (N = 0, α <= 0, an unknown field or
    name), in the clamp notes' wording: the page's label and the mode's range
    ("N must be in [1, 256]; got 0", as N = 500 gives "...; got 500; using 256")."""
    try:
        SMCConfig(**requested)
    except (TypeError, ValueError) as err:
        bounds = field_bounds(settings)
        for name, value in requested.items():
            if name not in bounds or not _is_kind(name, value):
                continue
            try:
                SMCConfig(**{name: value})
            except ValueError:  # of the field's kind, so out of the library's range
                low, high = bounds[name]
                raise InputError(range_message(FIELD_LABELS[name], value, low, high)) from None
        raise InputError(str(err)) from None


def _is_kind(name: str, value: Any) -> bool:
    """Whether ``value`` is of field ``name``'s kind (a finite number for floats)."""
    if isinstance(value, bool):
        return False
    if name in INT_FIELDS:
        return isinstance(value, int)
    return isinstance(value, int | float) and math.isfinite(value)


def clamp_config(
    config: SMCConfig | Mapping[str, Any], settings: DemoSettings
) -> tuple[SMCConfig, list[str]]:
    """An ``SMCConfig`` within the settings' caps, plus one message per value changed.

    Numbers out of range are clamped to ``field_bounds(settings)``; values
    that are not finite numbers fall back to the defaults; unknown fields are ignored.
    Raises ``InputError`` only for a schedule or resampling name that does not exist.
    """
    data = config.to_dict() if isinstance(config, SMCConfig) else dict(config)
    defaults = SMCConfig().to_dict()
    notes: list[str] = []
    values: dict[str, Any] = {}
    for f in fields(SMCConfig):
        if f.name not in data:
            values[f.name] = defaults[f.name]
            continue
        raw = data[f.name]
        if f.name in FLOAT_FIELDS:
            if raw is None and _KNOBS[f.name].optional:  # e.g. tau = None: tau_t = 1/alpha_t
                values[f.name] = None
                continue
            number = as_float(raw)
            if number is None:
                notes.append(f"{f.name}={shown(raw)} is not a finite number; using the default")
                values[f.name] = defaults[f.name]
            else:
                values[f.name] = number
        elif f.name in INT_FIELDS:
            if raw is None and _KNOBS[f.name].optional:  # e.g. K = None: the method's default
                values[f.name] = None
                continue
            number = as_int(raw)
            if number is None:
                notes.append(f"{f.name}={shown(raw)} is not an integer; using the default")
                values[f.name] = defaults[f.name]
            else:
                values[f.name] = number
        else:
            values[f.name] = raw
    unknown = sorted(set(data) - set(defaults))
    if unknown:
        notes.append(f"ignored unknown settings {unknown}")

    for name, (low, high) in field_bounds(settings).items():
        value = values[name]
        if value is None:  # proposal τ unset: τ_t = 1/α_t; K, M, H unset: the method's
            continue
        bounded = min(max(value, low), high)
        if bounded != value:
            if name in data:  # a default over the cap is capped without a word
                notes.append(range_message(FIELD_LABELS[name], value, low, high, using=bounded))
            values[name] = bounded
    for name, knob in _KNOBS.items():
        if knob.choices and values[name] not in knob.choices:
            raise InputError(
                f"{name} must be one of {list(knob.choices)}, got {shown(values[name])}"
            )
    try:
        return SMCConfig(**values), notes
    except ValueError as err:  # pragma: no cover - every field was bounded above
        raise InputError(str(err)) from None


ROLLOUT_METHODS = ("lookahead", "rollout")


def clamp_rollouts(
    config: SMCConfig, methods: Sequence[str], model: Any, settings: DemoSettings
) -> tuple[SMCConfig, list[str]]:
    """``config`` with one boundary's rollout forwards N·K·M·H <= ``max_rollout_forwards``
    for every rollout method in ``methods`` (others cost no rollouts), one note per knob
    lowered: M first, then H, then K (the defaults of each method count: K = V on a toy).

    Lowered knobs are written into the config, so they hold for every method that reads
    them. ``InputError`` when even K = M = H = 1 is over the cap (N alone is too large).
    """
    from powersmc_core.samplers.registry import rollout_knobs

    cap, n = settings.max_rollout_forwards, config.n_particles
    notes: list[str] = []
    for method in (m for m in ROLLOUT_METHODS if m in methods):
        knobs = dict(
            zip(
                ("rollout_k", "rollout_m", "rollout_h"),
                rollout_knobs(method, model, config),
                strict=True,
            )
        )
        if n * math.prod(knobs.values()) <= cap:
            continue
        if n > cap:
            raise InputError(
                range_message(FIELD_LABELS["n_particles"], n, 1, cap)
                + f" with {method} (N·K·M·H rollout forwards per boundary <= {cap:,})"
            )
        changed: dict[str, int] = {}
        for name in ("rollout_m", "rollout_h", "rollout_k"):
            others = n * math.prod(v for k, v in knobs.items() if k != name)
            allowed = max(1, cap // others)
            if knobs[name] > allowed:
                notes.append(
                    range_message(
                        f"{FIELD_LABELS[name]} (N·K·M·H <= {cap:,} rollout forwards)",
                        knobs[name],
                        1,
                        allowed,
                        using=allowed,
                    )
                )
                knobs[name] = changed[name] = allowed
            if n * math.prod(knobs.values()) <= cap:
                break
        config = replace(config, **changed)
    return config, notes


def as_float(raw: Any) -> float | None:
    """A finite float from a number or a short string, else None (never raises)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        if len(raw) > 64:
            return None
        raw = raw.strip()
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def as_int(raw: Any) -> int | None:
    """An int from an int, an integral float or a short string, else None (never raises)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return int(raw) if math.isfinite(raw) and raw.is_integer() else None
    if isinstance(raw, str):
        raw = raw.strip()
        # Length first: int() of a 5,000-digit string raises, and a 4,000-digit one is slow.
        if not raw or len(raw) > 20:
            return None
        try:
            return int(raw)
        except ValueError:
            number = as_float(raw)
            return int(number) if number is not None and number.is_integer() else None
    return None


def shown(raw: Any, limit: int = 40) -> str:
    """``repr(raw)`` cut to ``limit`` characters, for messages that quote visitor input."""
    text = repr(raw)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def prompt_ids(
    model: Any, prompt: str | Sequence[int], settings: DemoSettings, chat: bool = True
) -> list[int]:
    """Prompt ids: a token prefix (toy model, or ids) checked by the library's one
    prompt-encoding path, or a text sanitised and encoded by ``encode_prompt``."""
    if isinstance(prompt, str):
        return encode_prompt(model, prompt, settings, chat=chat)
    try:
        ids = prompts.encode_prompt(model, prompt, chat=chat)
    except ValueError as err:
        raise InputError(str(err)) from None
    check_prompt_tokens(len(ids), settings)
    return ids


# ---- stop rules ------------------------------------------------------------------------------
STOP_RULES = ("EOS only", "\\boxed{} answer", "stop strings")


def make_stop(rule: str, stop_strings: str = "") -> StopRule | None:
    """A fresh stop rule (they are stateful: one per run). ``stop_strings`` is comma-separated.

    Bounded before anything is split: at most ``MAX_STOP_FIELD_CHARS`` characters, at most
    ``MAX_STOP_STRINGS`` strings of at most ``MAX_STOP_STRING_CHARS`` each (the stop check
    runs every step for every particle, so its cost must not be the visitor's choice).
    The escapes ``\\n``, ``\\t``, ``\\r`` and ``\\\\`` are decoded; every other
    character, non-ASCII included ("é"), is kept as typed.
    """
    if rule not in STOP_RULES:
        raise InputError(f"stop rule must be one of {list(STOP_RULES)}, got {shown(rule)}")
    if rule == "\\boxed{} answer":
        return make_stop_rule(boxed=True)
    if rule == "stop strings":
        if not isinstance(stop_strings, str):
            raise InputError("stop strings must be text")
        if len(stop_strings) > MAX_STOP_FIELD_CHARS:
            raise InputError(
                f"stop strings: {len(stop_strings):,} characters; the limit is "
                f"{MAX_STOP_FIELD_CHARS}"
            )
        stop_strings, _ = clean_stop_strings(stop_strings)
        raw = [s for s in stop_strings.split(",") if s.strip()]
        if len(raw) > MAX_STOP_STRINGS:
            raise InputError(f"stop strings: {len(raw)} given; the limit is {MAX_STOP_STRINGS}")
        strings = [_unescape(s) for s in raw]
        too_long = [s for s in strings if len(s) > MAX_STOP_STRING_CHARS]
        if too_long:
            raise InputError(
                f"stop strings: {shown(too_long[0])} is longer than {MAX_STOP_STRING_CHARS} "
                "characters"
            )
        if not strings:
            raise InputError("stop strings: give at least one, comma-separated (\\n allowed)")
        return make_stop_rule(stop_strings=strings)
    return None


def clean_stop_strings(text: str) -> tuple[str, list[str]]:
    """(stop-string field without control or invisible characters, notes saying how many
    were removed); a stop string the visitor cannot see could never be told apart."""
    cleaned, removed = _CONTROL.subn("", text.replace("\r\n", "\n"))
    cleaned, invisible = strip_invisible(cleaned)
    total = removed + invisible
    return cleaned, [removed_note(total, "the stop strings")] if total else []


MAX_STOP_FIELD_CHARS = DemoSettings().max_stop_chars
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def _unescape(text: str) -> str:
    """``\\n`` → newline (and \\t, \\r, \\\\); other text unchanged (not ``unicode_escape``,
    which reads UTF-8 bytes as Latin-1 and turns "é" into "Ã©")."""
    return re.sub(r"\\([ntr\\])", lambda m: _ESCAPES[m.group(1)], text)
