"""The app's backend picker (issue 15): default, demo mode, caption, the make-fast hint.

AppTest on the toy models (no LLM is loaded: the sidebar only says which backend will
run), plus ``explorer.models.load_cached`` keyed by (name, backend).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer import models

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 60


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, fresh_app_state):
    monkeypatch.delenv("POWERSMC_BACKEND", raising=False)
    monkeypatch.delenv("POWERSMC_DEMO", raising=False)


def app(model: str = "toy-trap") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["model_choice"] = model
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def captions(at: AppTest) -> str:
    return "\n".join(c.value.replace("\\", "") for c in at.sidebar.caption)


def test_picker_defaults_to_auto_and_says_which_backend_runs():
    at = app()
    picker = at.selectbox(key="backend_choice")
    assert picker.value == "auto"
    assert set(picker.options) == {"auto", "torch", "llama.cpp"}
    assert at.session_state["model_backend"] == "auto"
    assert "Backend: torch (auto: not a GGUF model, so torch)" in captions(at)


def test_picker_default_follows_the_environment(monkeypatch):
    monkeypatch.setenv("POWERSMC_BACKEND", "torch")
    at = app()
    assert at.selectbox(key="backend_choice").value == "torch"
    assert at.session_state["model_backend"] == "torch"
    assert "make fast" not in captions(at)  # torch asked for: no suggestion


def test_choosing_llamacpp_for_a_toy_model_says_it_cannot():
    at = app()
    at.selectbox(key="backend_choice").set_value("llamacpp").run()
    assert not at.exception
    assert at.session_state["model_backend"] == "llamacpp"
    assert "Backend: unavailable (the llama.cpp backend runs GGUF models only" in captions(at)


def test_missing_llamacpp_suggests_make_fast(llamacpp_missing):
    at = app(model="smollm2")
    text = captions(at)
    assert "make fast" in text
    assert "Backend: torch (auto: torch, because llama-cpp-python is not installed" in text


def test_demo_hides_the_picker_and_serves_the_server_backend(monkeypatch):
    monkeypatch.setenv("POWERSMC_DEMO", "1")
    monkeypatch.setenv("POWERSMC_BACKEND", "torch")
    at = app()
    assert not [s for s in at.selectbox if s.key == "backend_choice"]
    assert at.session_state["model_backend"] == "torch"


def test_bad_backend_variable_is_one_error(monkeypatch):
    monkeypatch.setenv("POWERSMC_BACKEND", "cuda")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["model_choice"] = "toy-trap"
    at.run()
    assert any("POWERSMC_BACKEND" in e.value.replace("\\", "") for e in at.error)


def test_load_cached_keys_on_name_and_backend(monkeypatch):
    torch_model = models.load_cached("toy-trap", "torch")
    assert models.load_cached("toy-trap", "auto") is torch_model  # auto resolves to torch
    assert models.backend_caption(torch_model).startswith("Backend: torch")
    with pytest.raises(models.ModelLoadError, match="GGUF"):
        models.load_cached("toy-trap", "llamacpp")
    with pytest.raises(models.ModelLoadError, match="unknown backend"):
        models.load_cached("toy-trap", "cuda")
    monkeypatch.setenv("POWERSMC_BACKEND", "nope")
    with pytest.raises(models.ModelLoadError, match="POWERSMC_BACKEND"):
        models.load_cached("toy-trap")
