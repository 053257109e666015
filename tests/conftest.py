"""Shared fixtures. Monte-Carlo tests derive their tolerances from N and the number of runs."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Runs the app persists during tests go to a throwaway folder, never the repo's ./data.
os.environ.setdefault("POWERSMC_DATA_DIR", tempfile.mkdtemp(prefix="powersmc-test-data-"))


@pytest.fixture
def single_thread():
    """Toy tensors are tiny: OpenMP fan-out only adds barrier overhead (x6 measured here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_app_state(monkeypatch, tmp_path):
    """The app's process-wide limiter and run store forgotten before and after, runs in tmp_path.

    Both are built lazily from the environment, so a test's own env changes (demo mode,
    backend) take effect whatever the fixture order.
    """
    from explorer.limits import reset_global_limiter
    from explorer.store import reset_run_store

    monkeypatch.setenv("POWERSMC_DATA_DIR", str(tmp_path))
    reset_global_limiter()
    reset_run_store()
    yield
    reset_global_limiter()
    reset_run_store()


@pytest.fixture
def llamacpp_missing(monkeypatch):
    """llama.cpp reported as not installed, wherever the library and the app ask."""
    from explorer import models
    from powersmc_core.models import backends
    from powersmc_core.models.llamacpp import runtime

    missing = "llama-cpp-python is not installed: run `make fast` (test double)"
    monkeypatch.setattr(backends, "llamacpp_available", lambda: (False, missing))
    monkeypatch.setattr(runtime, "llamacpp_available", lambda: (False, missing))
    monkeypatch.setattr(models, "llamacpp_available", lambda: (False, missing))
