"""Shareable links: ``?model=…&n=…&alpha=…`` parsed, sanitised and clamped; never raises.

A share link is a full URL (``share_link(..., base_url=...)``: the server's own address,
``app_root`` of the browser's URL or ``POWERSMC_PUBLIC_URL``; only http(s) bases, never
one with credentials) and carries the run's config, model, preset (by name, so the
opened run is graded against the preset's known answer) or free-text prompt, stop rule
(``stop=eos|boxed|strings``, with ``stops=`` the stop strings) and backend
(``backend=torch|llamacpp|auto``). A link's unknown preset, stop rule or backend is
dropped with a message, never an exception.

``parse_query_params(st.query_params, settings)`` returns a ``QueryParams`` with the
accepted values (each finite, clamped by ``inputs.clamp_config`` to ``inputs.field_bounds``,
the one table of ranges the Live widgets are drawn with)
and one message per value dropped or changed. The accepted keys are ``SMCConfig``'s own
field names plus the short aliases in ``QUERY_ALIASES``. ``share_query`` writes such
a link for a run's settings and never includes the visitor's ``owner`` token;
``model_not_offered`` says when a linked model is not among the picker's options;
``widget_values`` turns an accepted link into the Live SMC widgets' session-state values
(``app.py`` applies them once per session, before any widget is drawn).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlencode, urlsplit

from explorer import session_keys as keys
from explorer.inputs import (
    INT_FIELDS,
    MAX_STOP_FIELD_CHARS,
    STOP_RULES,
    InputError,
    as_float,
    as_int,
    check_model_name,
    clamp_config,
    make_stop,
    sanitize_prompt,
    shown,
)
from explorer.settings import DemoSettings, demo_settings
from powersmc_core.engine.config import SCHEDULES, SMCConfig
from powersmc_core.engine.resampling import RESAMPLERS
from powersmc_core.models.backends import BACKENDS

__all__ = [
    "OWNER_PARAM",
    "QUERY_ALIASES",
    "QUERY_FIELDS",
    "STOP_IDS",
    "QueryParams",
    "app_root",
    "entry_share_link",
    "model_not_offered",
    "new_owner_token",
    "page_base",
    "parse_query_params",
    "public_base",
    "share_link",
    "share_query",
    "valid_owner",
    "widget_values",
]

# ---- URL query parameters ----------------------------------------------------------------------
# Short names in shareable links; every SMCConfig field is accepted by its own name too.
QUERY_ALIASES = {
    "n": "n_particles",
    "tokens": "max_new_tokens",
    "kappa": "ess_threshold",
    "ramp": "ramp_tokens",
    "block": "block_size",
}
QUERY_FIELDS = {**{f.name: f.name for f in fields(SMCConfig)}, **QUERY_ALIASES}
OWNER_PARAM = "owner"
# Stop rules in links by short id (the rule labels hold spaces and a backslash).
STOP_IDS = {"eos": STOP_RULES[0], "boxed": STOP_RULES[1], "strings": STOP_RULES[2]}
_STOP_ID = {rule: short for short, rule in STOP_IDS.items()}
# The Live page's path and the other pages' (``app.py``): ``app_root`` strips one of them.
LIVE_PATH = "live_smc"
PAGE_PATHS = ("live_smc", "runs", "compare", "theory_lab", "home")
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
    stop_rule: str | None = None  # one of inputs.STOP_RULES
    stop_strings: str | None = None  # with stop_rule "stop strings"
    backend: str | None = None  # one of models.backends.BACKENDS (full mode only)
    method: str | None = None  # the Live sampler, one of SHARED_METHODS


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
    run: dict[str, str | None] = {
        "stop_rule": None,
        "stop_strings": None,
        "backend": None,
        "method": None,
    }
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
                        f"link parameter {key}={shown(value)}: use one of {list(valid)}"
                    )
                    continue
            elif name in INT_FIELDS:
                parsed = as_int(value)
                if parsed is None:
                    messages.append(
                        f"link parameter {key}={shown(value)} is not an integer; ignored"
                    )
                    continue
            else:
                parsed = as_float(value)
                if parsed is None:
                    messages.append(
                        f"link parameter {key}={shown(value)} is not a finite number; ignored"
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
                messages.append(f"link parameter preset={shown(value)} is not a known preset")
        elif key == "stop":
            rule = STOP_IDS.get(value.strip().lower(), value if value in STOP_RULES else None)
            if rule is None:
                messages.append(
                    f"link parameter stop={shown(value)} is not a stop rule; use one of "
                    f"{list(STOP_IDS)}"
                )
            else:
                run["stop_rule"] = rule
        elif key == "stops":
            try:
                make_stop(STOP_RULES[2], value)  # the bounds a typed field has
            except InputError as err:
                messages.append(f"link parameter stops: {err}")
            else:
                run["stop_strings"] = value
        elif key == "backend":
            name = value.strip().lower().replace("llama.cpp", "llamacpp")
            if name not in BACKENDS:
                messages.append(
                    f"link parameter backend={shown(value)} is not a backend; use one of "
                    f"{list(BACKENDS)}"
                )
            elif settings.enabled:  # a demo serves its own backend; the picker is hidden
                messages.append(
                    f"link parameter backend={shown(value)} ignored: this demo serves one backend"
                )
            else:
                run["backend"] = name
        elif key == "sampler":
            if value in SHARED_METHODS:
                run["method"] = value
            else:
                messages.append(
                    f"link parameter sampler={shown(value)} is not a Live sampler; use one of "
                    f"{list(SHARED_METHODS)}"
                )
        elif key == OWNER_PARAM:
            if _OWNER.match(value):
                owner = value
            else:
                messages.append("link parameter owner is malformed; a new run history was started")
        elif key == "page":
            continue
        else:
            messages.append(f"unknown link parameter {key!r} ignored")
    if run["stop_strings"] is not None and run["stop_rule"] not in (None, STOP_RULES[2]):
        run["stop_strings"] = None  # strings only mean something under their own rule
        messages.append("link parameter stops ignored: the link's stop rule is not 'strings'")
    elif run["stop_strings"] is not None:
        run["stop_rule"] = STOP_RULES[2]
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
        **run,
    )


def share_query(
    config: SMCConfig,
    model: str,
    prompt: str | None = None,
    *,
    preset: str | None = None,
    stop_rule: str | None = None,
    stop_strings: str | None = None,
    backend: str | None = None,
    method: str | None = None,
) -> dict[str, str]:
    """Query parameters of a shareable link for these settings; never the owner token.

    A ``preset`` (its name) goes instead of the prompt, so the opened run is graded;
    ``stop_rule`` is one of ``inputs.STOP_RULES``, written by its short id."""
    query = {
        "model": model,
        "alpha": f"{config.alpha:g}",
        "n": str(config.n_particles),
        "tokens": str(config.max_new_tokens),
        "seed": str(config.seed),
        "schedule": config.schedule,
        "kappa": f"{config.ess_threshold:g}",
    }
    if preset is not None:
        query["preset"] = preset
    elif prompt is not None and len(prompt) <= MAX_QUERY_VALUE:
        query["prompt"] = prompt
    if stop_rule in _STOP_ID:
        query["stop"] = _STOP_ID[stop_rule]
        if (
            stop_rule == STOP_RULES[2]
            and stop_strings
            and len(stop_strings) <= MAX_STOP_FIELD_CHARS
        ):
            query["stops"] = stop_strings
    if backend in BACKENDS:
        query["backend"] = backend
    if method in SHARED_METHODS and method != "smc":
        query["sampler"] = method
        for name in (*ROLLOUT_FIELDS, "block_size"):
            value = getattr(config, name)
            if value is not None:
                query[name] = f"{value:g}" if isinstance(value, float) else str(value)
    return query


def app_root(url: Any) -> str | None:
    """``scheme://host[:port]/path/`` of the app from a page's URL (the page's own path
    segment, query and fragment removed); None for anything but a plain http(s) URL
    (``javascript:``, credentials in it, control characters, no host)."""
    if not isinstance(url, str) or len(url) > MAX_QUERY_VALUE:
        return None
    url = url.strip()
    if any(c.isspace() or ord(c) < 32 or c in "\\<>\"'`" for c in url):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None  # "https://good.example@evil.example/" reads as the first host
    path = parts.path.rstrip("/")
    head, _, last = path.rpartition("/")
    if last in PAGE_PATHS:
        path = head
    return f"{parts.scheme.lower()}://{parts.netloc}{path}/"


def share_link(
    config: SMCConfig,
    model: str,
    prompt: str | None = None,
    *,
    base_url: str | None = None,
    **run: str | None,
) -> str:
    """A link to the Live SMC page with these settings (``share_query``; ``run`` holds
    its ``preset``, ``stop_rule``, ``stop_strings`` and ``backend``): a full URL under
    ``base_url`` (the app's root, see ``app_root``), relative when it is None.

    Raises ``ValueError`` for a ``base_url`` that ``app_root`` refuses (not http(s))."""
    tail = f"{LIVE_PATH}?" + urlencode(share_query(config, model, prompt, **run))
    if base_url is None:
        return tail
    root = app_root(base_url)
    if root is None:
        raise ValueError("a share link's base must be an http(s) address")
    return root + tail


def entry_share_link(entry: Any, base_url: str | None = None) -> str:
    """The share link of a history entry (``RunEntry``): its settings, model, preset or
    text prompt, stop rule, backend and sampler (look-ahead runs carry their K, M, H, ε)."""
    config = SMCConfig.from_dict(entry.config)
    prompt = None if entry.toy or not isinstance(entry.prompt, str) else entry.prompt
    return share_link(
        config,
        entry.model,
        prompt,
        base_url=base_url,
        preset=getattr(entry, "preset", None),
        stop_rule=getattr(entry, "stop_rule", None),
        stop_strings=getattr(entry, "stop_strings", None),
        backend=getattr(entry, "backend", None),
        method=getattr(getattr(entry, "result", None), "method", None),
    )


def public_base(settings: DemoSettings, browser_url: Any) -> str | None:
    """The app's root for share links: ``POWERSMC_PUBLIC_URL`` (behind a reverse proxy the
    browser's URL may be an internal one) else the browser's URL; None when neither is a
    usable http(s) address."""
    return app_root(settings.public_url) or app_root(browser_url)


def page_base(browser_url: Any) -> str | None:
    """``public_base`` under this server's settings (pages pass ``st.context.url``)."""
    return public_base(demo_settings(), browser_url)


def new_owner_token() -> str:
    """A fresh run-history token (22 URL-safe characters, 128 random bits)."""
    return secrets.token_urlsafe(16)


def valid_owner(token: Any) -> bool:
    return isinstance(token, str) and bool(_OWNER.match(token))


# Live SMC widget key of each SMCConfig field a link may set (app_pages/live_smc.py).
# The Live page's samplers a link may name (``explorer.live.LIVE_METHODS``), and the fields
# a look-ahead run adds to a link (None: the method's default, left out).
SHARED_METHODS = ("smc", "lookahead")
ROLLOUT_FIELDS = ("rollout_k", "rollout_m", "rollout_h", "lookahead_epsilon")

LIVE_WIDGETS = {
    "alpha": "live_alpha",
    "n_particles": "live_n",
    "max_new_tokens": "live_max_tokens",
    "seed": "live_seed",
    "schedule": "live_schedule",
    "ramp_tokens": "live_ramp",
    "alpha_start": "live_alpha_start",
    "target_ess": "live_target_ess",
    "ess_threshold": "live_kappa",
    "resampling": "live_resampling",
    "chopthin_eta": "live_chopthin_eta",
    "block_size": "live_block",
    **{name: f"live_{name}" for name in ROLLOUT_FIELDS},  # page_kit.rollout_settings' keys
}


def model_not_offered(name: Any, options: Sequence[str]) -> str:
    """The visitor's message for a link's model that the sidebar picker does not offer
    (quoted with ``shown``; escape it for markdown). The picker keeps its default."""
    offered = ", ".join(o for o in options if not o.startswith("custom"))
    return (
        f"link parameter model={shown(name)} is not offered in the model picker; "
        f"using the default model instead (offered: {offered})"
    )


def widget_values(link: QueryParams) -> dict[str, Any]:
    """Session-state values that make the widgets show what a link asked for (clamped).

    Numbers keep the widget's own type (a float widget gets a float), the model fills
    the sidebar picker, a prompt switches the Live page to free text, a preset to presets.
    """
    values: dict[str, Any] = {}
    for name, value in link.config.items():
        key = LIVE_WIDGETS.get(name)
        if key is None:
            if name == "proposal_temperature" and value is not None:
                values[keys.LIVE_TAU_CUSTOM], values[keys.LIVE_TAU] = True, float(value)
            continue
        values[key] = value if name in INT_FIELDS or isinstance(value, str) else float(value)
    if link.model is not None:
        values[keys.MODEL_CHOICE] = link.model
    if link.stop_rule is not None:
        values["live_stop_rule"] = link.stop_rule  # page_kit.live_settings' widget keys
        if link.stop_strings is not None:
            values["live_stop_strings"] = link.stop_strings
    if link.backend is not None:
        values["backend_choice"] = link.backend  # app.py's picker (full mode only)
    if link.method is not None:
        values["live_method"] = link.method  # page_kit.LIVE_METHOD_KEY
    if link.prompt is not None:
        values[keys.LIVE_PROMPT_MODE], values[keys.LIVE_PROMPT] = "Free text", link.prompt
    elif link.preset is not None:
        values[keys.LIVE_PROMPT_MODE], values[keys.LIVE_PRESET] = "Preset problem", link.preset
    return values
