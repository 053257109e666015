"""Shared steps of every transformers load: device and dtype, reading a folder, wrapping.

``resolve_device_dtype`` picks CUDA > MPS > CPU and float32 on CPU, bfloat16 on CUDA;
``from_folder`` reads a ``save_pretrained`` folder or hub id onto the CPU (the device
move is separate, so file problems and out-of-memory are told apart); ``wrap`` puts
the result behind the ``LanguageModel`` protocol (``HFModel``). transformers is
imported inside the functions: importing this module stays light.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from powersmc_core.models.base import LanguageModel
from powersmc_core.models.errors import LoadInfo, ModelLoadError, require
from powersmc_core.models.id_tokenizer import id_tokenizer_for

if TYPE_CHECKING:
    import torch

__all__ = [
    "attach",
    "from_folder",
    "hub_offline",
    "offline",
    "resolve_device_dtype",
    "to_device",
    "wrap",
]


def resolve_device_dtype(
    device: str | torch.device | None, dtype: str | torch.dtype | None
) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) from names or objects; ``ModelLoadError`` if either is invalid."""
    require("transformers")
    import torch

    from powersmc_core.models.device import pick_device, pick_dtype

    try:
        torch_device = device if isinstance(device, torch.device) else pick_device(device)
        torch_dtype = dtype if isinstance(dtype, torch.dtype) else pick_dtype(torch_device, dtype)
    except (ValueError, RuntimeError, AttributeError, TypeError) as err:
        raise ModelLoadError(f"bad device/dtype ({device!r}, {dtype!r}): {err}") from err
    return torch_device, torch_dtype


def to_device(hf_model: Any, device: torch.device, name: str) -> Any:
    """Move to ``device`` in eval mode; out of memory becomes a ``ModelLoadError``."""
    import torch

    try:
        return hf_model.to(device).eval()
    except torch.OutOfMemoryError as err:
        raise ModelLoadError(
            f"{name} does not fit in {device} memory: try dtype='bfloat16' or device='cpu'"
        ) from err


def wrap(hf_model: Any, tokenizer: Any, name: str, copy_on_write: bool) -> LanguageModel:
    """A transformers model and tokenizer behind the ``LanguageModel`` protocol."""
    from powersmc_core.models.hf.model import HFModel

    return HFModel(hf_model, tokenizer, name, copy_on_write=copy_on_write)


def attach(model: Any, info: LoadInfo) -> None:
    """Set ``model.load_info``; a backend with ``__slots__`` just goes without."""
    with contextlib.suppress(AttributeError):
        model.load_info = info


def from_folder(
    name_or_path: str | Path,
    device: torch.device,
    dtype: torch.dtype,
    *,
    local_only: bool,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """(model on CPU, tokenizer) from a save_pretrained folder or hub id; IdTokenizer if none.

    The move to ``device`` is left to the caller (``to_device``) so that file problems
    and device problems (out of memory) are told apart.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(local_files_only=local_only, trust_remote_code=trust_remote_code)
    hf_model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=dtype, **kwargs)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), **kwargs)
    except (OSError, ValueError, TypeError):
        tokenizer = id_tokenizer_for(hf_model.config)
    return hf_model, tokenizer


def hub_offline() -> bool:
    """Read the variables now: huggingface_hub freezes them at import time."""
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 for the duration (restored after).

    transformers is imported first on purpose: huggingface_hub reads the variable at
    import, and freezing offline mode would silently break later hub loads in the same
    process. Real protection comes from local_files_only=True on every call inside.
    """
    import transformers  # noqa: F401

    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before
