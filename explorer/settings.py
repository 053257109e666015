"""Demo-mode settings: the ONE place every cap of the app is written.

A public demo is configured by environment variables (read once, validated, frozen
into ``DemoSettings``). ``DemoSettings()`` holds the app's own bounds (full mode);
``DEMO_CAPS`` the tighter ones that ``POWERSMC_DEMO=1`` applies; each variable below
can move one cap. Every page reads its caps from here, through ``explorer.gate``:

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
POWERSMC_STORE_OWNER_MAX_MB            20 (demo)  bound on one owner's persisted runs
POWERSMC_STORE_ADDRESS_MAX_MB          40 (demo)  bytes of runs saved per address per day
POWERSMC_RUNS_PER_ADDRESS              1 (demo)   runs decoding at once per client address
POWERSMC_QUEUE_PER_ADDRESS             1 (demo)   queue places per client address
POWERSMC_SESSIONS_PER_ADDRESS          8 (demo)   open sessions (websockets) per address
POWERSMC_NEW_SESSIONS_PER_MINUTE       30 (demo)  new sessions per address per minute
POWERSMC_SESSION_MAX_MB                48 (demo)  uploads + parsed runs + figures per session
POWERSMC_TRUSTED_PROXIES               (none)     proxy addresses whose X-Forwarded-For counts
POWERSMC_SECRET                        (random)   key signing visitor cookies (not a cap)
POWERSMC_PUBLIC_URL                    (none)     the app's public address for share links
                                                  (behind a reverse proxy); else the browser's
=====================================  =========  ===========================================

The MH steps per block, the Theory lab's runs per point, the task-set size, the
Compare timing repeats and the rollout forwards of one block boundary (N·K·M·H, the
look-ahead and rollout methods) have demo caps too (``DEMO_CAPS``: 8, 50, 10, 3 and
16,384), fixed here rather than by variables.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from powersmc_core.io.trace import TraceLimits

__all__ = [
    "DEMO_CAPS",
    "DEMO_ENV",
    "DEMO_TRACE_LIMITS",
    "FULL_TRACE_LIMITS",
    "MAX_MODEL_NAME_CHARS",
    "MAX_STOP_STRINGS",
    "MAX_STOP_STRING_CHARS",
    "SAFE_MODEL_NAMES",
    "DemoSettings",
    "SettingsError",
    "demo_settings",
    "env_snapshot",
]

DEMO_ENV = "POWERSMC_DEMO"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# Model names that can never load code or read files: the embedded model and the toys
# (toy-random:V,L,seed is bounded by ToyLM itself: V <= 8, L <= 8).
SAFE_MODEL_NAMES = ("smollm2", "toy-trap", "toy-random")


# Bounds of the stop-strings field (the stop check runs every step for every particle, so
# its cost must not be the visitor's choice) and of a typed or linked model name.
MAX_STOP_STRINGS = 16
MAX_STOP_STRING_CHARS = 64
MAX_MODEL_NAME_CHARS = 200


class SettingsError(ValueError):
    """An environment variable holds a value the server cannot run with (operator error)."""


@dataclass(frozen=True)
class DemoSettings:
    """Caps and switches of one server process; the defaults are the full app's bounds.

    Memory and redraw cost grow as N·T, hence the bounds on N and tokens even in full
    mode (the library itself accepts more).
    """

    enabled: bool = False
    max_particles: int = 256
    max_new_tokens: int = 2048
    alpha_min: float = 1e-3  # outside demo mode: anything SMCConfig accepts, within reason
    alpha_max: float = 1e3
    max_mh_steps: int = 64  # MH proposals per block (Compare)
    max_theory_runs: int = 500  # Monte-Carlo runs per point (Theory lab)
    max_task_problems: int = 50  # problems of a task set (Compare)
    max_compare_repeats: int = 20  # timed runs of every method (Compare)
    # Rollout forwards of one block boundary, N·K·M·H (look-ahead SMC, rollout sampling).
    max_rollout_forwards: int = 2**22
    max_run_seconds: float = 3600.0
    max_prompt_tokens: int | None = None  # None: the model's own limit
    max_upload_bytes: int = 20 * 1024 * 1024
    allowed_models: tuple[str, ...] | None = None  # None: any name load_model accepts
    max_concurrent_runs: int = 64
    max_queue: int = 64
    queue_timeout_seconds: float = 600.0
    data_dir: Path = field(default_factory=lambda: Path("data"))
    store_max_bytes: int = 200 * 1024 * 1024
    store_owner_max_bytes: int = 200 * 1024 * 1024
    store_address_max_bytes_per_day: int | None = None  # None: only the store's budget
    persist: bool = True
    # Per client address (``explorer.identity.client_address``), so that cookies a script
    # rotates or omits cannot multiply a visitor; a shared network can raise them.
    runs_per_address: int = 64
    queue_per_address: int = 64
    sessions_per_address: int = 1024
    new_sessions_per_minute: int = 100_000
    trusted_proxies: tuple[str, ...] = ()
    # What one browser session may hold in memory: raw uploads, parsed runs, cached figures.
    session_max_bytes: int = 512 * 1024 * 1024
    # Streamlit's own byte caps (the launcher passes them: ``explorer.serve``), in MB.
    max_widget_state_mb: int = 25
    max_message_mb: int = 200
    # The app's public http(s) address for share links (None: the URL the browser used).
    public_url: str | None = None

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

    @property
    def max_stop_chars(self) -> int:
        """Characters of a stop-strings field: ``MAX_STOP_STRINGS`` strings of at most
        ``MAX_STOP_STRING_CHARS`` each, a comma between (``inputs.make_stop``'s bounds)."""
        return MAX_STOP_STRINGS * (MAX_STOP_STRING_CHARS + 1)

    @property
    def max_model_name_chars(self) -> int:
        """Characters of a model name (hub id or folder) a visitor may type or link."""
        return MAX_MODEL_NAME_CHARS

    @property
    def trace_limits(self) -> TraceLimits:
        """What an uploaded trace may hold, so that replaying it has a bounded cost.

        Every chart and table of a page walks at most steps × N cells once (the particle
        table O(N), the charts one Plotly trace per series, never one per particle), so
        the cell cap bounds a page's figures: 100,000 cells build in about 0.7 s of CPU
        and N = 1,024 in one step in about 0.1 s here (docs/deploy.md). The full app's
        caps still admit any run it can make itself (N = 256, 2,048 tokens).
        """
        if self.enabled:
            return DEMO_TRACE_LIMITS
        return FULL_TRACE_LIMITS

    @property
    def max_upload_mb(self) -> float:
        """The upload cap in MiB, as the pages and messages write it (5 MB in demo mode)."""
        return self.max_upload_bytes / 2**20

    @property
    def max_held_upload_bytes(self) -> int:
        """Uploaded bytes one session may hold (Streamlit keeps files until it ends): two
        files at the cap, one being replaced by the next, within the session's budget."""
        return min(2 * self.max_upload_bytes, self.session_max_bytes)

    def describe(self) -> str:
        """One line for the page: what the demo allows."""
        if not self.enabled:
            return "full mode: no demo limits"
        return (
            f"Demo mode: N ≤ {self.max_particles}, ≤ {self.max_new_tokens} new tokens, "
            f"α in [{self.alpha_min:g}, {self.alpha_max:g}], runs stop after "
            f"{self.max_run_seconds:g} s, {self.max_concurrent_runs} run(s) at a time server-wide"
        )


FULL = DemoSettings()

# Upload caps on the work a trace can cause (``DemoSettings.trace_limits``).
FULL_TRACE_LIMITS = TraceLimits(
    max_particles=10_000, max_steps=4096, max_cells=600_000, max_text_chars=20_000
)
DEMO_TRACE_LIMITS = TraceLimits(
    max_particles=1024, max_steps=2048, max_cells=100_000, max_text_chars=4000
)

# What POWERSMC_DEMO=1 changes (before the per-cap variables apply).
DEMO_CAPS: dict[str, Any] = {
    "enabled": True,
    "max_particles": 32,
    "max_new_tokens": 96,
    "alpha_min": 0.5,
    "alpha_max": 8.0,
    "max_mh_steps": 8,
    "max_theory_runs": 50,
    "max_task_problems": 10,
    "max_compare_repeats": 3,
    # N = 32 with rollout sampling's default K = M = H = 8 (look-ahead on a toy: 32·8·4·4).
    "max_rollout_forwards": 16_384,
    "max_run_seconds": 60.0,
    "max_prompt_tokens": 256,
    "max_upload_bytes": 5 * 1024 * 1024,
    "allowed_models": SAFE_MODEL_NAMES,
    "max_concurrent_runs": 2,
    "max_queue": 16,
    "queue_timeout_seconds": 120.0,
    "store_owner_max_bytes": 20 * 1024 * 1024,
    "store_address_max_bytes_per_day": 40 * 1024 * 1024,
    "runs_per_address": 1,
    "queue_per_address": 1,
    "sessions_per_address": 8,
    "new_sessions_per_minute": 30,
    "session_max_bytes": 48 * 1024 * 1024,
    "max_widget_state_mb": 1,
    "max_message_mb": 16,
}


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


def _env_megabytes(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    """A size in MB from ``name`` as bytes; unset keeps ``default`` (None: no bound)."""
    if env.get(name) is None or not env[name].strip():
        return default
    return int(_env_number(env, name, 0, 0.01, 1e6, False) * 2**20)


def _parse_networks(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated addresses or CIDR networks, validated (``10.0.0.0/8, ::1``)."""
    import ipaddress

    networks = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise SettingsError(f"{name}: {part!r} is not an address or network") from None
    return tuple(networks)


def _parse_public_url(raw: str) -> str:
    """``POWERSMC_PUBLIC_URL``: an http(s) address with a host and no credentials."""
    from urllib.parse import urlsplit

    problem = "must be an http(s) address such as https://demo.example.org/powersmc/"
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise SettingsError(f"POWERSMC_PUBLIC_URL={raw!r}: {problem}") from None
    if (
        parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or any(c.isspace() for c in raw)
    ):
        raise SettingsError(f"POWERSMC_PUBLIC_URL={raw!r}: {problem}")
    return raw


def demo_settings(environ: Mapping[str, str] | None = None) -> DemoSettings:
    """Settings from the environment (``os.environ`` by default); raises ``SettingsError``."""
    env = os.environ if environ is None else environ
    enabled = _env_bool(env, DEMO_ENV, False)
    base = replace(FULL, **DEMO_CAPS) if enabled else FULL

    def number(suffix: str, default: float, low: float, high: float, integer: bool = True) -> Any:
        return _env_number(env, suffix, default, low, high, integer)

    settings = replace(
        base,
        max_particles=number(
            "POWERSMC_DEMO_MAX_PARTICLES", base.max_particles, 1, FULL.max_particles
        ),
        max_new_tokens=number(
            "POWERSMC_DEMO_MAX_NEW_TOKENS", base.max_new_tokens, 1, FULL.max_new_tokens
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
        store_owner_max_bytes=int(
            number(
                "POWERSMC_STORE_OWNER_MAX_MB", base.store_owner_max_bytes / 2**20, 0.01, 1e6, False
            )
            * 2**20
        ),
        store_address_max_bytes_per_day=_env_megabytes(
            env, "POWERSMC_STORE_ADDRESS_MAX_MB", base.store_address_max_bytes_per_day
        ),
        runs_per_address=number("POWERSMC_RUNS_PER_ADDRESS", base.runs_per_address, 1, 1024),
        queue_per_address=number("POWERSMC_QUEUE_PER_ADDRESS", base.queue_per_address, 0, 10_000),
        sessions_per_address=number(
            "POWERSMC_SESSIONS_PER_ADDRESS", base.sessions_per_address, 1, 100_000
        ),
        new_sessions_per_minute=number(
            "POWERSMC_NEW_SESSIONS_PER_MINUTE", base.new_sessions_per_minute, 1, 1_000_000
        ),
        session_max_bytes=int(
            number("POWERSMC_SESSION_MAX_MB", base.session_max_bytes / 2**20, 1, 1e6, False) * 2**20
        ),
    )
    proxies = env.get("POWERSMC_TRUSTED_PROXIES", "").strip()
    if proxies:
        settings = replace(
            settings, trusted_proxies=_parse_networks("POWERSMC_TRUSTED_PROXIES", proxies)
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
    public_url = env.get("POWERSMC_PUBLIC_URL", "").strip()
    if public_url:
        settings = replace(settings, public_url=_parse_public_url(public_url))
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


def env_snapshot(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The POWERSMC_* variables in effect (for the health probe / logs; no secrets here)."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in sorted(env.items()) if k.startswith("POWERSMC_")}
