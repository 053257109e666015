"""The one device-and-dtype policy for models: where a model runs and in what precision.

* Device: the one asked for, else CUDA, then Apple MPS, then the CPU
  (``default_device_type``, ``pick_device``).
* Model dtype: the one asked for, else bfloat16 on CUDA and float32 on CPU and MPS
  (CPU matmuls in bf16 are slow and MPS bf16 support is partial) (``pick_dtype``).
* Weight arithmetic: float64 wherever the device has it; Apple MPS has no float64,
  so float32 there (``weight_dtype``).

Every loader, backend and the backend chooser ask this module. Importing it imports
no torch (each function imports it when called), so ``models.backends`` can ask for
the default device even where torch is absent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEVICE_ORDER",
    "DTYPE_NAMES",
    "default_device_type",
    "pick_device",
    "pick_dtype",
    "runs_on_cpu",
    "weight_dtype",
]

# The default device: the first of these that is available.
DEVICE_ORDER = ("cuda", "mps", "cpu")
# Names a user may give for a model dtype (besides "auto"), -> torch attribute.
DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


def _available(kind: str) -> bool:
    import torch

    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return torch.backends.mps.is_available()
    return kind == "cpu"


def default_device_type() -> str:
    """ "cuda", "mps" or "cpu": the first of ``DEVICE_ORDER`` available ("cpu" without torch)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return "cpu"
    return next(kind for kind in DEVICE_ORDER if _available(kind))


def runs_on_cpu(device: str | torch.device | None) -> bool:
    """Would a model asked for on ``device`` land on the CPU? None: the default device."""
    if device is not None:
        return str(device).split(":")[0] == "cpu"
    return default_device_type() == "cpu"


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device (``ValueError`` if it is not available), else the default one."""
    import torch

    if requested is None:
        return torch.device(default_device_type())
    device = torch.device(requested)
    if device.type == "cuda" and not _available("cuda"):
        raise ValueError(f"device {requested!r} requested but CUDA is not available")
    if device.type == "mps" and not _available("mps"):
        raise ValueError(f"device {requested!r} requested but Apple MPS is not available")
    return device


def pick_dtype(device: torch.device | str, requested: str | None = None) -> torch.dtype:
    """The requested dtype, else bfloat16 on CUDA and float32 on CPU/MPS."""
    import torch

    if requested is not None and requested != "auto":
        try:
            return getattr(torch, DTYPE_NAMES[requested.lower()])
        except KeyError:
            valid = ", ".join(sorted(DTYPE_NAMES))
            raise ValueError(f"unknown dtype {requested!r}; valid: auto, {valid}") from None
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def weight_dtype(device: torch.device | str) -> torch.dtype:
    """float64 for weight arithmetic wherever the device has it (Apple MPS does not)."""
    import torch

    return torch.float32 if torch.device(device).type == "mps" else torch.float64
