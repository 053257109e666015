"""Every session-state key of the app, named once.

Pages and ``explorer`` modules read and write ``st.session_state`` through these names
(a test fails if a page indexes session state with a string literal). The values are
the keys tests and links use, so they never change; widget keys that another module
sets (``query.widget_values`` fills the Live SMC form from a link) are named here too.
"""

from __future__ import annotations

# ---- app.py: the visitor, the model and the shared link ---------------------------------
MODEL_NAME = "model_name"  # the sidebar's model, read by every page
MODEL_BACKEND = "model_backend"  # "auto" | "torch" | "llamacpp"
OWNER = "owner"  # the run-history token (issued by app.py, never by a link)
OWNER_OFFER = "owner_offer"  # a token from a link, adopted only on confirmation
VISITOR = "visitor"  # identity.visitor_key: one browser across its tabs (signed cookie)
ADDRESS = "client_address"  # identity.client_address: what per-address caps count
QUERY_CHECKED = "query_checked"  # the link was applied once this session
HISTORY = "run_history"  # explorer.history: the session's run entries, newest first

# ---- pages: the last result of each -----------------------------------------------------
LIVE_ACTIVE = "live_active"  # the Admission of the Live SMC run in flight
LIVE_LAST = "live_last"  # the RunEntry of the last finished or stopped live run
LIVE_MODEL_KIND = "live_model_kind"  # "toy" | "llm": the model kind the Live form was set for
COMPARE_ACTIVE = "cmp_active"  # the Admission of the comparison in flight (resumed on reruns)
COMPARE_LAST = "cmp_last"  # comparison.ComparisonReport of the last comparison that ended
TASK_LAST = "cmp_task_last"  # {"rows", "summary"} of the last task set
THEORY_LAST = "theory_last"  # {(model, settings): results} of the last checks
ARENA_LAST = "arena_last"  # {settings: ArenaResult} of the last arena run
RUNS_RESTORED = "runs_restored"  # stored runs of the owner were loaded this session
RUNS_LAST_UPLOAD = "runs_last_upload"  # ((name, size, file id), error or None): last read
RUNS_DROPPED = "runs_dropped"  # explorer.session_memory: runs dropped for memory, untold
FIGURE_CACHE = "figure_cache"  # explorer.figure_cache: built figures by (view, run, step)

# ---- widget keys set from outside their page (links) ------------------------------------
MODEL_CHOICE = "model_choice"
RUNS_SELECT = "runs_select"
LIVE_PROMPT_MODE = "live_prompt_mode"
LIVE_PROMPT = "live_prompt"
LIVE_PRESET = "live_preset"
LIVE_TAU_CUSTOM = "live_tau_custom"
LIVE_TAU = "live_tau"
LIVE_STOP_RULE = "live_stop_rule"  # reset by page_kit.reset_for_model_kind
LIVE_STOP_STRINGS = "live_stop_strings"
