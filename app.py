"""Power-SMC Explorer: the Streamlit entry point (`streamlit run app.py`).

It is the frame around every page: page config, the shared sidebar (model picker),
and `st.navigation` over the page scripts in app_pages/. Pages read the chosen model
name from session state (`explorer.session_keys.MODEL_NAME`, the backend under
`MODEL_BACKEND`) and load it through `explorer.page_kit.load_model_or_stop`
(one cached instance per model and backend); every run they start
goes through `explorer.gate`, and every page runs inside `explorer.errors.friendly_errors`
(one escaped line instead of a traceback).

Links: `?model=…&n=…&alpha=…&tokens=…&prompt=…` fill the Live SMC widgets once per
session (clamped to the widgets' ranges; a toast per change, escaped; a model the picker
does not offer is named in a toast and the default used). The run-history token is
issued here by the server and kept in session state only: a token arriving in a link
(`?owner=…`) is removed from the address bar and adopted only when the visitor presses
"Use this run history".
"""

import streamlit as st

from explorer import models, query
from explorer import session_keys as keys
from explorer import settings as demo
from explorer.errors import friendly_errors
from explorer.gate import who_is_asking
from explorer.guard import guard_installed
from explorer.inputs import InputError, check_model_name, escape_markdown
from explorer.presets import TEXT_PRESETS

st.set_page_config(page_title="Power-SMC Explorer", page_icon="🎯", layout="wide")

# The page scripts live in app_pages/, not pages/: Streamlit (1.67) still treats a folder
# named pages/ as a legacy multipage app until st.navigation first runs, so a fresh server's
# first deep link (/live_smc) would run the page alone, without this frame.
PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/live_smc.py", title="Live SMC", icon=":material/monitoring:"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("app_pages/theory_lab.py", title="Theory lab", icon=":material/functions:"),
    st.Page("app_pages/arena.py", title="Arena", icon=":material/leaderboard:"),
    st.Page("app_pages/runs.py", title="Runs", icon=":material/history:"),
]
page = st.navigation(PAGES)

# ---- shared sidebar: the model every page uses ---------------------------------------
# ---- demo mode, shareable links and the visitor's run-history token --------------------
try:
    settings = demo.demo_settings()
except demo.SettingsError as err:  # a bad POWERSMC_* variable: say which, serve nothing
    st.error(f"Server misconfigured: {escape_markdown(err)}")
    st.stop()
if settings.enabled:  # tracebacks name server paths: a public demo shows none
    st.set_option("client.showErrorDetails", "none")
    if not guard_installed():  # per-address caps and upload bounds live in the launcher
        st.error("Server misconfigured: start the public demo with `python -m explorer.serve`.")
        st.stop()
state = st.session_state
link = query.parse_query_params(st.query_params, settings, presets=[p.name for p in TEXT_PRESETS])
if keys.QUERY_CHECKED not in state:  # apply the link and report its problems once per session
    state[keys.QUERY_CHECKED] = True
    for message in link.messages:
        st.toast(escape_markdown(message))
    state.update(query.widget_values(link))
owner = state.setdefault(keys.OWNER, query.new_owner_token())  # issued here, never by a link
if link.owner is not None and link.owner != owner:
    state[keys.OWNER_OFFER] = link.owner  # adopted only if the visitor confirms (sidebar)
state[keys.VISITOR], state[keys.ADDRESS] = who_is_asking(
    st.context.cookies, st.context.headers, settings
)


def _allowed(name: str) -> bool:
    try:
        check_model_name(name, settings)
    except InputError:
        return False
    return True


CUSTOM = "custom: hub id or local folder"
choices = {n: d for n, d in models.model_choices().items() if _allowed(n)}
custom = settings.custom_models and models.custom_models_allowed()
options = list(choices) + ([CUSTOM] if custom else [])
# A link's model that the picker does not offer (toy-random:8,8,77, a hub id): said once,
# then the picker's default. The picker is a fixed list on purpose: the Theory lab
# enumerates a toy exactly, and toy-random:8,8 has about a million sequences.
if state.get(keys.MODEL_CHOICE, options[0]) not in options:
    st.toast(escape_markdown(query.model_not_offered(state.pop(keys.MODEL_CHOICE), options)))
with st.sidebar:
    st.subheader("Model")
    picked = st.selectbox(
        "Model",
        options,
        index=options.index(models.DEFAULT_MODEL) if models.DEFAULT_MODEL in options else 0,
        key=keys.MODEL_CHOICE,
        format_func=lambda name: name,
        help="\n\n".join(f"**{name}**: {text}" for name, text in choices.items()),
    )
    if picked == CUSTOM:
        name = st.text_input(
            "Hub id or local folder",
            max_chars=settings.max_model_name_chars,
            key="model_custom",
            placeholder="HuggingFaceTB/SmolLM2-360M-Instruct or /path/to/folder",
        ).strip()
    else:
        name = picked
        st.caption(choices.get(picked, ""))
    state[keys.MODEL_NAME] = name
    # Backend: a demo serves the server's POWERSMC_BACKEND; otherwise the visitor picks.
    try:
        backend = models.default_backend()
    except models.ModelLoadError as err:
        st.error(f"Server misconfigured: {escape_markdown(err)}")
        st.stop()
    if not settings.enabled:
        backend = st.selectbox(
            "Backend",
            list(models.BACKEND_LABELS),
            index=list(models.BACKEND_LABELS).index(backend),
            key="backend_choice",
            format_func=models.BACKEND_LABELS.get,
            help="auto: the backend measured faster on this kind of machine (a calibration or the "
            "shipped table); else llama.cpp for the embedded GGUF model on CPU when installed",
        )
    state[keys.MODEL_BACKEND] = backend
    st.caption(escape_markdown(models.planned_backend(name, backend)))
    if backend != "torch" and (hint := models.fast_backend_hint()):
        st.caption(escape_markdown(hint))
    st.caption("Toy models are exact (every sequence enumerable); the LLM runs on this machine.")
    if settings.enabled:
        st.info(settings.describe())
    if state.get(keys.OWNER_OFFER):
        st.warning(
            "This link carries a run-history key. Use it only if you made the link yourself: "
            "runs you start afterwards are saved under it, readable by whoever holds the link."
        )
        if st.button("Use this run history", key="owner_import"):
            state[keys.OWNER] = state.pop(keys.OWNER_OFFER)
            state[keys.RUNS_RESTORED] = False  # the Runs page loads the imported history
            st.rerun()
        if st.button("Ignore it", key="owner_ignore"):
            state.pop(keys.OWNER_OFFER)
            st.rerun()

if query.OWNER_PARAM in st.query_params:  # a copied address bar must not carry it
    del st.query_params[query.OWNER_PARAM]

with friendly_errors(st.error):
    page.run()
