"""Power-SMC Explorer: minimal landing page (the full app is built in pages/)."""

import streamlit as st

st.set_page_config(page_title="Power-SMC Explorer", page_icon="🎯", layout="wide")
st.title("Power-SMC Explorer")
st.write("Sequence-level power sampling pi_alpha(y|x) ∝ p(y|x)^alpha by sequential Monte Carlo.")
