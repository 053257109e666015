"""Power-SMC Explorer: the Streamlit entry point (`streamlit run app.py`).

It is the frame around every page: page config, the shared sidebar (model picker),
and `st.navigation` over the page scripts in app_pages/. Pages read the chosen model
name from `st.session_state["model_name"]` and load it through
`app_support.load_cached` (one cached instance per model).
"""

import streamlit as st

from powersmc_core import app_support

st.set_page_config(page_title="Power-SMC Explorer", page_icon="🎯", layout="wide")

# The page scripts live in app_pages/, not pages/: Streamlit (1.67) still treats a folder
# named pages/ as a legacy multipage app until st.navigation first runs, so a fresh server's
# first deep link (/live_smc) would run the page alone, without this frame.
PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/live_smc.py", title="Live SMC", icon=":material/monitoring:"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("app_pages/theory_lab.py", title="Theory lab", icon=":material/functions:"),
    st.Page("app_pages/runs.py", title="Runs", icon=":material/history:"),
]
page = st.navigation(PAGES)

# ---- shared sidebar: the model every page uses ---------------------------------------
CUSTOM = "custom: hub id or local folder"
choices = app_support.model_choices()
options = list(choices) + ([CUSTOM] if app_support.custom_models_allowed() else [])
with st.sidebar:
    st.subheader("Model")
    picked = st.selectbox(
        "Model",
        options,
        index=options.index(app_support.DEFAULT_MODEL),
        key="model_choice",
        format_func=lambda name: name,
        help="\n\n".join(f"**{name}**: {text}" for name, text in choices.items()),
    )
    if picked == CUSTOM:
        name = st.text_input(
            "Hub id or local folder",
            key="model_custom",
            placeholder="HuggingFaceTB/SmolLM2-360M-Instruct or /path/to/folder",
        ).strip()
    else:
        name = picked
        st.caption(choices.get(picked, ""))
    st.session_state["model_name"] = name
    st.caption("Toy models are exact (every sequence enumerable); the LLM runs on this machine.")

page.run()
