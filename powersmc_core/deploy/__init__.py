"""Deployment and demo hardening: settings from the environment, input sanitising,
run limits with a queue, persisted runs with crash recovery, health probes.

Pages use (see docs/deploy.md, "Wiring into the pages"):

    from powersmc_core import deploy
    settings = deploy.demo_settings()                      # frozen, from POWERSMC_* variables
    q = deploy.parse_query_params(st.query_params, settings)   # never raises
    config, notes = deploy.clamp_config(config, settings)  # caps N, tokens, alpha
    ids = deploy.encode_prompt(model, text, settings)      # InputError with a clear message
    with deploy.global_limiter().slot(deploy.current_session_id(), on_wait) as slot:
        with deploy.tracked(live, owner) as journal:       # persisted, crash-safe
            for update in slot.bounded(live.updates()): ...
"""

from .limits import (
    LimitError,
    QueueFull,
    QueueTimeout,
    RunLimiter,
    RunSlot,
    SessionBusy,
    current_session_id,
    global_limiter,
    reset_global_limiter,
)
from .safe_trace import read_trace_safely, read_upload
from .settings import (
    OWNER_PARAM,
    SAFE_MODEL_NAMES,
    DemoSettings,
    InputError,
    QueryParams,
    SettingsError,
    check_model_name,
    check_prompt_tokens,
    clamp_config,
    demo_notice,
    demo_settings,
    encode_prompt,
    escape_markdown,
    new_owner_token,
    parse_query_params,
    sanitize_prompt,
    share_query,
    valid_owner,
)
from .store import (
    RunJournal,
    RunStore,
    StoredRun,
    StoredRunInfo,
    owner_hash,
    reset_run_store,
    run_store,
    tracked,
)

__all__ = [
    "OWNER_PARAM",
    "SAFE_MODEL_NAMES",
    "DemoSettings",
    "InputError",
    "LimitError",
    "QueryParams",
    "QueueFull",
    "QueueTimeout",
    "RunJournal",
    "RunLimiter",
    "RunSlot",
    "RunStore",
    "SessionBusy",
    "SettingsError",
    "StoredRun",
    "StoredRunInfo",
    "check_model_name",
    "check_prompt_tokens",
    "clamp_config",
    "current_session_id",
    "demo_notice",
    "demo_settings",
    "encode_prompt",
    "escape_markdown",
    "global_limiter",
    "new_owner_token",
    "owner_hash",
    "parse_query_params",
    "read_trace_safely",
    "read_upload",
    "reset_global_limiter",
    "reset_run_store",
    "run_store",
    "sanitize_prompt",
    "share_query",
    "tracked",
    "valid_owner",
]
