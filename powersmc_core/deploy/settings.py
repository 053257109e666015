"""Demo-mode settings and the sanitising of everything a visitor can send.

A public demo is configured by environment variables (read once, validated, frozen
into ``DemoSettings``). With ``POWERSMC_DEMO=1`` the caps below apply; without it
the app keeps its own generous bounds, but input is still sanitised the same way:

=====================================  =========  ===========================================
variable                               default    meaning
=====================================  =========  ===========================================
POWERSMC_DEMO                          0          1/true/on: demo mode
POWERSMC_DEMO_MAX_PARTICLES            32         cap on N
POWERSMC_DEMO_MAX_NEW_TOKENS           96         cap on max new tokens
POWERSMC_DEMO_ALPHA_MIN / _MAX         0.5 / 8    allowed alpha range
POWERSMC_DEMO_MAX_RUN_SECONDS          60         wall-clock cap of one run
POWERSMC_DEMO_MAX_PROMPT_TOKENS        256        prompt length cap (tokens)
POWERSMC_DEMO_MAX_UPLOAD_MB            5          trace upload cap
POWERSMC_DEMO_MODELS                   smollm2,toy-trap,toy-random   allowlist
POWERSMC_MAX_CONCURRENT_RUNS           2 (demo)   runs decoding at once, server-wide
POWERSMC_MAX_QUEUE                     16         runs allowed to wait for a slot
POWERSMC_QUEUE_TIMEOUT_SECONDS         120        longest wait in the queue
POWERSMC_DATA_DIR                      ./data     persisted runs live in <dir>/runs
POWERSMC_STORE_MAX_MB                  200        bound on the persisted runs' total size
POWERSMC_PERSIST                       1          0: do not persist runs
=====================================  =========  ===========================================

Every function that takes visitor input (``parse_query_params``, ``sanitize_prompt``,
``clamp_config``, ``check_model_name``) either returns a usable value plus messages
to show, or raises ``InputError`` whose text is fit to show as it is; none lets a
NaN, an infinity, a control character or an arbitrary model path through.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..config import SCHEDULES, SMCConfig
from ..resampling import RESAMPLERS

__all__ = [
    "DEMO_ENV",
    "SAFE_MODEL_NAMES",
    "DemoSettings",
    "InputError",
    "QueryParams",
    "SettingsError",
    "check_model_name",
    "clamp_config",
    "demo_settings",
    "escape_markdown",
    "parse_query_params",
    "sanitize_prompt",
    "share_query",
]

DEMO_ENV = "POWERSMC_DEMO"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Outside demo mode: the app's own bounds (app_support.MAX_PARTICLES / MAX_NEW_TOKENS /
# MAX_UPLOAD_BYTES); duplicated so this module never imports the page helpers, and a
# test checks the two agree.
APP_MAX_PARTICLES = 256
APP_MAX_NEW_TOKENS = 2048
APP_MAX_UPLOAD_BYTES = 20 * 1024 * 1024

# Model names that can never load code or read files: the embedded model and the toys
# (toy-random:V,L,seed is bounded by ToyLM itself: V <= 8, L <= 8).
SAFE_MODEL_NAMES = ("smollm2", "toy-trap", "toy-random")
_TOY_RANDOM = re.compile(r"^toy-random(?::(\d{1,2}),(\d{1,2}),(\d{1,6}))?$")
_EMBEDDED_ALIASES = {"smollm2-135m-instruct": "smollm2"}


class SettingsError(ValueError):
    """An environment variable holds a value the server cannot run with (operator error)."""


class InputError(ValueError):
    """Visitor input that cannot be used; the message is fit to show on the page."""


@dataclass(frozen=True)
class DemoSettings:
    """Caps and switches of one server process (see the module docstring for the variables)."""

    enabled: bool = False
    max_particles: int = APP_MAX_PARTICLES
    max_new_tokens: int = APP_MAX_NEW_TOKENS
    alpha_min: float = 1e-3  # outside demo mode: anything SMCConfig accepts, within reason
    alpha_max: float = 1e3
    max_run_seconds: float = 3600.0
    max_prompt_tokens: int | None = None  # None: the model's own limit
    max_upload_bytes: int = APP_MAX_UPLOAD_BYTES
    allowed_models: tuple[str, ...] | None = None  # None: any name load_model accepts
    max_concurrent_runs: int = 64
    max_queue: int = 64
    queue_timeout_seconds: float = 600.0
    data_dir: Path = field(default_factory=lambda: Path("data"))
    store_max_bytes: int = 200 * 1024 * 1024
    persist: bool = True

    @property
    def trust_remote_code(self) -> bool:
        """Never: no page may make the server import code shipped with a model."""
        return False

    @property
    def custom_models(self) -> bool:
        """Free-form hub ids / local paths: only outside demo mode."""
        return not self.enabled and self.allowed_models is None

    @property
    def max_prompt_chars(self) -> int:
        """Characters accepted before tokenising at all (a token is rarely > 16 characters)."""
        tokens = self.max_prompt_tokens if self.max_prompt_tokens is not None else 8192
        return max(2000, 16 * tokens)

    def describe(self) -> str:
        """One line for the page: what the demo allows."""
        if not self.enabled:
            return "full mode: no demo limits"
        return (
            f"Demo mode: N ≤ {self.max_particles}, ≤ {self.max_new_tokens} new tokens, "
            f"α in [{self.alpha_min:g}, {self.alpha_max:g}], runs stop after "
            f"{self.max_run_seconds:g} s, {self.max_concurrent_runs} run(s) at a time server-wide"
        )


# ---- environment ---------------------------------------------------------------------------
def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r}: use 1/0 (or true/false, on/off)")


def _env_number(
    env: Mapping[str, str], name: str, default: float, low: float, high: float, integer: bool
) -> Any:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise SettingsError(f"{name}={raw!r}: must be {kind}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise SettingsError(f"{name}={raw!r}: must be in [{low:g}, {high:g}]")
    return value


def demo_settings(environ: Mapping[str, str] | None = None) -> DemoSettings:
    """Settings from the environment (``os.environ`` by default); raises ``SettingsError``."""
    env = os.environ if environ is None else environ
    enabled = _env_bool(env, DEMO_ENV, False)
    base = DemoSettings()
    if enabled:
        base = replace(
            base,
            enabled=True,
            max_particles=32,
            max_new_tokens=96,
            alpha_min=0.5,
            alpha_max=8.0,
            max_run_seconds=60.0,
            max_prompt_tokens=256,
            max_upload_bytes=5 * 1024 * 1024,
            allowed_models=SAFE_MODEL_NAMES,
            max_concurrent_runs=2,
            max_queue=16,
            queue_timeout_seconds=120.0,
        )

    def number(suffix: str, default: float, low: float, high: float, integer: bool = True) -> Any:
        return _env_number(env, suffix, default, low, high, integer)

    settings = replace(
        base,
        max_particles=number(
            "POWERSMC_DEMO_MAX_PARTICLES", base.max_particles, 1, APP_MAX_PARTICLES
        ),
        max_new_tokens=number(
            "POWERSMC_DEMO_MAX_NEW_TOKENS", base.max_new_tokens, 1, APP_MAX_NEW_TOKENS
        ),
        alpha_min=number("POWERSMC_DEMO_ALPHA_MIN", base.alpha_min, 1e-3, 1e3, False),
        alpha_max=number("POWERSMC_DEMO_ALPHA_MAX", base.alpha_max, 1e-3, 1e3, False),
        max_run_seconds=number(
            "POWERSMC_DEMO_MAX_RUN_SECONDS", base.max_run_seconds, 1, 86_400, False
        ),
        max_upload_bytes=int(
            number("POWERSMC_DEMO_MAX_UPLOAD_MB", base.max_upload_bytes / 2**20, 0.001, 1024, False)
            * 2**20
        ),
        max_concurrent_runs=number(
            "POWERSMC_MAX_CONCURRENT_RUNS", base.max_concurrent_runs, 1, 1024
        ),
        max_queue=number("POWERSMC_MAX_QUEUE", base.max_queue, 0, 10_000),
        queue_timeout_seconds=number(
            "POWERSMC_QUEUE_TIMEOUT_SECONDS", base.queue_timeout_seconds, 1, 86_400, False
        ),
        store_max_bytes=int(
            number("POWERSMC_STORE_MAX_MB", base.store_max_bytes / 2**20, 1, 1_000_000, False)
            * 2**20
        ),
        persist=_env_bool(env, "POWERSMC_PERSIST", base.persist),
    )
    if "POWERSMC_DEMO_MAX_PROMPT_TOKENS" in env:
        settings = replace(
            settings,
            max_prompt_tokens=number("POWERSMC_DEMO_MAX_PROMPT_TOKENS", 256, 1, 1_000_000),
        )
    if settings.alpha_min > settings.alpha_max:
        raise SettingsError(
            f"POWERSMC_DEMO_ALPHA_MIN ({settings.alpha_min:g}) is above "
            f"POWERSMC_DEMO_ALPHA_MAX ({settings.alpha_max:g})"
        )
    data_dir = env.get("POWERSMC_DATA_DIR", "").strip()
    if data_dir:
        settings = replace(settings, data_dir=Path(data_dir).expanduser())
    raw_models = env.get("POWERSMC_DEMO_MODELS")
    if raw_models is not None and raw_models.strip():
        models = tuple(m.strip().lower() for m in raw_models.split(",") if m.strip())
        unsafe = [m for m in models if m not in SAFE_MODEL_NAMES]
        if unsafe:
            raise SettingsError(
                f"POWERSMC_DEMO_MODELS lists {unsafe}; only {list(SAFE_MODEL_NAMES)} can be "
                "offered publicly (they never load code or read files)"
            )
        settings = replace(settings, allowed_models=models)
    return settings


# ---- models ----------------------------------------------------------------------------------
def check_model_name(name: Any, settings: DemoSettings) -> str:
    """The canonical model name if ``settings`` allow it, else ``InputError``.

    In demo mode only the allowlist passes: ``smollm2``, ``toy-trap``, ``toy-random``
    and ``toy-random:V,L,seed`` with 2 <= V <= 8, 1 <= L <= 8 — never a hub id or a
    path, so nobody can make the server import code or read its files.
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError("no model name given: pick a model in the sidebar")
    if len(name) > 200:
        raise InputError("model name is too long")
    cleaned = name.strip()
    if settings.allowed_models is None:
        if _CONTROL.search(cleaned):
            raise InputError("model name contains control characters")
        return cleaned
    lowered = _EMBEDDED_ALIASES.get(cleaned.lower(), cleaned.lower())
    toy = _TOY_RANDOM.match(lowered)
    family = "toy-random" if toy else lowered
    if family in settings.allowed_models:
        if toy and toy.group(1) is not None:
            vocab, length = int(toy.group(1)), int(toy.group(2))
            if not (2 <= vocab <= 8 and 1 <= length <= 8):
                raise InputError(
                    f"toy-random:V,L,seed needs 2 <= V <= 8 and 1 <= L <= 8, got {cleaned!r}"
                )
        return lowered
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


def sanitize_prompt(text: Any, max_chars: int) -> tuple[str, list[str]]:
    """(clean text, notes): NFC, CRLF -> LF, control characters removed, length checked.

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
    if removed:
        notes.append(f"removed {removed} control character(s) from the prompt")
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
    """Sanitise ``text`` and tokenise it under the demo's token limit (text models only)."""
    cleaned, _ = sanitize_prompt(text, settings.max_prompt_chars)
    encode = getattr(model, "encode_prompt", None)
    if encode is None:
        raise InputError(f"model {getattr(model, 'name', '?')!r} takes a token prefix, not text")
    try:
        ids = list(encode(cleaned, chat=chat, max_prompt_tokens=settings.max_prompt_tokens))
    except ValueError as err:  # the backend's own limit or an empty prompt
        raise InputError(str(err)) from None
    check_prompt_tokens(len(ids), settings)
    return ids


def escape_markdown(text: str, max_chars: int = 500) -> str:
    """Text from a visitor or an uploaded file, safe inside ``st.markdown``.

    Markdown in such text could render links or remote images (which would leak every
    viewer's address to the image host), so markdown syntax characters are escaped.
    """
    text = _CONTROL.sub("", str(text))
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", text)


# ---- sampler settings ------------------------------------------------------------------------
_FLOAT_FIELDS = ("alpha", "ess_threshold", "alpha_start", "target_ess", "proposal_temperature")
_INT_FIELDS = ("n_particles", "ramp_tokens", "block_size", "max_new_tokens", "seed")


def clamp_config(
    config: SMCConfig | Mapping[str, Any], settings: DemoSettings
) -> tuple[SMCConfig, list[str]]:
    """An ``SMCConfig`` within the settings' caps, plus one message per value changed.

    Numbers out of range are clamped (N, max new tokens, alpha, alpha_start); values
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
        if f.name in _FLOAT_FIELDS:
            if raw is None and f.name == "proposal_temperature":
                values[f.name] = None
                continue
            number = _as_float(raw)
            if number is None:
                notes.append(f"{f.name}={_show(raw)} is not a finite number; using the default")
                values[f.name] = defaults[f.name]
            else:
                values[f.name] = number
        elif f.name in _INT_FIELDS:
            number = _as_int(raw)
            if number is None:
                notes.append(f"{f.name}={_show(raw)} is not an integer; using the default")
                values[f.name] = defaults[f.name]
            else:
                values[f.name] = number
        else:
            values[f.name] = raw
    unknown = sorted(set(data) - set(defaults))
    if unknown:
        notes.append(f"ignored unknown settings {unknown}")

    def clamp(name: str, low: float, high: float, label: str) -> None:
        value = values[name]
        bounded = min(max(value, low), high)
        if bounded != value:
            if name in data:  # a default over the cap is capped without a word
                notes.append(f"{label} {value:g} is outside [{low:g}, {high:g}]; using {bounded:g}")
            values[name] = bounded

    clamp("n_particles", 1, settings.max_particles, "N")
    clamp("max_new_tokens", 1, settings.max_new_tokens, "max new tokens")
    clamp("alpha", settings.alpha_min, settings.alpha_max, "α")
    clamp("alpha_start", settings.alpha_min, settings.alpha_max, "α start")
    clamp("ess_threshold", 0.0, 1.0, "κ")
    clamp("target_ess", 0.01, 1.0, "target ESS/N")
    clamp("ramp_tokens", 1, max(1, settings.max_new_tokens), "ramp tokens")
    clamp("block_size", 1, max(1, settings.max_new_tokens), "block size")
    clamp("seed", 0, 2**31 - 1, "seed")
    if values["proposal_temperature"] is not None:
        clamp("proposal_temperature", 0.01, 100.0, "proposal τ")
    if values["schedule"] not in SCHEDULES:
        raise InputError(
            f"schedule must be one of {list(SCHEDULES)}, got {_show(values['schedule'])}"
        )
    if values["resampling"] not in RESAMPLERS:
        raise InputError(
            f"resampling must be one of {sorted(RESAMPLERS)}, got {_show(values['resampling'])}"
        )
    try:
        return SMCConfig(**values), notes
    except ValueError as err:  # pragma: no cover - every field was bounded above
        raise InputError(str(err)) from None


def _as_float(raw: Any) -> float | None:
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


def _as_int(raw: Any) -> int | None:
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
            number = _as_float(raw)
            return int(number) if number is not None and number.is_integer() else None
    return None


def _show(raw: Any, limit: int = 40) -> str:
    text = repr(raw)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- URL query parameters ----------------------------------------------------------------------
# Short names in shareable links -> SMCConfig fields (long names are accepted too).
QUERY_FIELDS = {
    "alpha": "alpha",
    "n": "n_particles",
    "n_particles": "n_particles",
    "tokens": "max_new_tokens",
    "max_new_tokens": "max_new_tokens",
    "seed": "seed",
    "schedule": "schedule",
    "resampling": "resampling",
    "kappa": "ess_threshold",
    "ess_threshold": "ess_threshold",
    "alpha_start": "alpha_start",
    "ramp": "ramp_tokens",
    "target_ess": "target_ess",
    "block": "block_size",
}
QUERY_TEXT = ("model", "prompt", "preset")
OWNER_PARAM = "owner"
_OWNER = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
MAX_QUERY_VALUE = 2000


@dataclass(frozen=True)
class QueryParams:
    """What a shareable link asked for, already sanitised; ``messages`` say what was dropped."""

    config: dict[str, Any]  # valid, clamped SMCConfig fields (only those given)
    model: str | None = None
    prompt: str | None = None
    preset: str | None = None
    owner: str | None = None  # the visitor's run-history token, if well-formed
    messages: tuple[str, ...] = ()


def parse_query_params(
    params: Mapping[str, Any], settings: DemoSettings, presets: Sequence[str] = ()
) -> QueryParams:
    """Sanitise ``st.query_params`` (values are strings or lists of strings); never raises.

    Each accepted value is finite, in range and clamped to the demo caps; NaN, inf,
    over-long values, unknown keys, unknown models or presets are dropped with a message.
    """
    messages: list[str] = []
    config: dict[str, Any] = {}
    text: dict[str, str | None] = {"model": None, "prompt": None, "preset": None}
    owner = None
    for key, raw in list(params.items())[:64]:
        key = str(key)[:40]
        value = raw[-1] if isinstance(raw, list | tuple) and raw else raw
        if not isinstance(value, str):
            value = "" if value is None else str(value)
        if len(value) > MAX_QUERY_VALUE:
            messages.append(f"link parameter {key!r} is too long; ignored")
            continue
        if key in QUERY_FIELDS:
            name = QUERY_FIELDS[key]
            parsed: Any
            if name in ("schedule", "resampling"):
                parsed = value.strip().lower()
                valid = SCHEDULES if name == "schedule" else tuple(sorted(RESAMPLERS))
                if parsed not in valid:
                    messages.append(
                        f"link parameter {key}={_show(value)}: use one of {list(valid)}"
                    )
                    continue
            elif name in _INT_FIELDS:
                parsed = _as_int(value)
                if parsed is None:
                    messages.append(
                        f"link parameter {key}={_show(value)} is not an integer; ignored"
                    )
                    continue
            else:
                parsed = _as_float(value)
                if parsed is None:
                    messages.append(
                        f"link parameter {key}={_show(value)} is not a finite number; ignored"
                    )
                    continue
            config[name] = parsed
        elif key == "model":
            try:
                text["model"] = check_model_name(value, settings)
            except InputError as err:
                messages.append(f"link parameter model: {err}")
        elif key == "prompt":
            try:
                text["prompt"], notes = sanitize_prompt(
                    value, min(MAX_QUERY_VALUE, settings.max_prompt_chars)
                )
                messages.extend(notes)
            except InputError as err:
                messages.append(f"link parameter prompt: {err}")
        elif key == "preset":
            if value in presets:
                text["preset"] = value
            else:
                messages.append(f"link parameter preset={_show(value)} is not a known preset")
        elif key == OWNER_PARAM:
            if _OWNER.match(value):
                owner = value
            else:
                messages.append("link parameter owner is malformed; a new run history was started")
        elif key == "page":
            continue
        else:
            messages.append(f"unknown link parameter {key!r} ignored")
    if config:
        clamped, notes = clamp_config(config, settings)
        clamped_dict = clamped.to_dict()
        config = {name: clamped_dict[name] for name in config}
        messages.extend(notes)
    return QueryParams(
        config=config,
        model=text["model"],
        prompt=text["prompt"],
        preset=text["preset"],
        owner=owner,
        messages=tuple(messages),
    )


def share_query(config: SMCConfig, model: str, prompt: str | None = None) -> dict[str, str]:
    """Query parameters of a shareable link for these settings; never the owner token."""
    query = {
        "model": model,
        "alpha": f"{config.alpha:g}",
        "n": str(config.n_particles),
        "tokens": str(config.max_new_tokens),
        "seed": str(config.seed),
        "schedule": config.schedule,
        "kappa": f"{config.ess_threshold:g}",
    }
    if prompt is not None and len(prompt) <= MAX_QUERY_VALUE:
        query["prompt"] = prompt
    return query


def new_owner_token() -> str:
    """A fresh run-history token (22 URL-safe characters, 128 random bits)."""
    import secrets

    return secrets.token_urlsafe(16)


def valid_owner(token: Any) -> bool:
    return isinstance(token, str) and bool(_OWNER.match(token))


def demo_notice(settings: DemoSettings) -> str | None:
    """A short banner text for the pages in demo mode, None otherwise."""
    return settings.describe() if settings.enabled else None


def env_snapshot(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The POWERSMC_* variables in effect (for the health probe / logs; no secrets here)."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in sorted(env.items()) if k.startswith("POWERSMC_")}
