"""Shareable links: ``?model=…&n=…&alpha=…`` parsed, sanitised and clamped; never raises.

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

from explorer import session_keys as keys
from explorer.inputs import (
    INT_FIELDS,
    InputError,
    as_float,
    as_int,
    check_model_name,
    clamp_config,
    sanitize_prompt,
    shown,
)
from explorer.settings import DemoSettings
from powersmc_core.engine.config import SCHEDULES, SMCConfig
from powersmc_core.engine.resampling import RESAMPLERS

__all__ = [
    "OWNER_PARAM",
    "QUERY_ALIASES",
    "QUERY_FIELDS",
    "QueryParams",
    "entry_share_link",
    "model_not_offered",
    "new_owner_token",
    "parse_query_params",
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


def share_link(config: SMCConfig, model: str, prompt: str | None = None) -> str:
    """A relative link to the Live SMC page with these settings (``share_query``)."""
    from urllib.parse import urlencode

    return "live_smc?" + urlencode(share_query(config, model, prompt))


def entry_share_link(entry: Any) -> str:
    """The share link of a history entry (``RunEntry``): its settings, model and text prompt."""
    config = SMCConfig.from_dict(entry.config)
    prompt = None if entry.toy or not isinstance(entry.prompt, str) else entry.prompt
    return share_link(config, entry.model, prompt)


def new_owner_token() -> str:
    """A fresh run-history token (22 URL-safe characters, 128 random bits)."""
    return secrets.token_urlsafe(16)


def valid_owner(token: Any) -> bool:
    return isinstance(token, str) and bool(_OWNER.match(token))


# Live SMC widget key of each SMCConfig field a link may set (app_pages/live_smc.py).
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
    "block_size": "live_block",
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
    if link.prompt is not None:
        values[keys.LIVE_PROMPT_MODE], values[keys.LIVE_PROMPT] = "Free text", link.prompt
    elif link.preset is not None:
        values[keys.LIVE_PROMPT_MODE], values[keys.LIVE_PRESET] = "Preset problem", link.preset
    return values
