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
