"""models/device.py: the one device order (CUDA > MPS > CPU) and dtype rule."""

import pytest
import torch

from powersmc_core.models import backends, device


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_default_device_follows_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert device.default_device_type() == expected
    assert device.runs_on_cpu(None) is (expected == "cpu")
    # The backend chooser asks the same policy: auto picks torch off the CPU.
    choice = backends.choose_backend("smollm2", "auto", None)
    assert expected == "cpu" or choice.name == "torch"


def test_explicit_device_and_dtypes():
    assert device.runs_on_cpu("cpu") and not device.runs_on_cpu("cuda:1")
    assert device.pick_dtype("cpu") == torch.float32
    assert device.pick_dtype("mps") == torch.float32
    assert device.pick_dtype("cuda") == torch.bfloat16
    assert device.pick_dtype("cuda", "fp16") == torch.float16
    assert device.weight_dtype("cpu") == torch.float64
    assert device.weight_dtype(torch.device("mps")) == torch.float32
    with pytest.raises(ValueError, match="valid: auto"):
        device.pick_dtype("cpu", "int8")
