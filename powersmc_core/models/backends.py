"""Which engine runs a model: torch (transformers) or llama.cpp, chosen in one place.

Every consumer (CLI ``--backend``, ``bench``, ``eval``, the app's sidebar) asks this
module, so a backend name means the same everywhere::

    from powersmc_core.models.backends import load_model_with_backend
    model = load_model_with_backend("smollm2", backend="auto", threads=None)
    model.backend          # "llamacpp" or "torch": what actually runs
    model.backend_reason   # one line saying why (show it in the CLI / app)

Backends:

* ``"torch"``: ``load_model`` (transformers; any model, any device).
* ``"llamacpp"``: ``LlamaCppModel`` on the GGUF file itself (CPU only; GGUF models:
  the embedded ``smollm2`` or a local ``.gguf`` path). Needs the optional package
  ``llama-cpp-python`` (``make fast``, which compiles llama.cpp once). Asking for it
  when it cannot run raises ``ModelLoadError`` saying what to do.
* ``"auto"`` (default): torch unless the model is GGUF, on the CPU, and llama.cpp
  imports; then the backend measured faster for SMC at the nearest (N, threads):
  this machine's calibration (``bench --calibrate-backends``) else the shipped table
  (``backend_timings``); with no measurement for the model, llama.cpp. If llama.cpp
  fails to load the model, auto falls back to torch and says so in
  ``backend_reason``: torch always still works.

Threads: ``default_threads()`` (``POWERSMC_THREADS``, else ``OMP_NUM_THREADS``, else
min(4, usable CPUs)); only llama.cpp reads it (torch keeps its own setting).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from powersmc_core.models.backend_timings import CALIBRATE_HINT, lookup, timing_table
from powersmc_core.models.base import LanguageModel
from powersmc_core.models.device import runs_on_cpu
from powersmc_core.models.errors import ModelLoadError
from powersmc_core.models.llamacpp.runtime import (
    FAST_INSTALL_HINT,
    MAX_DEFAULT_THREADS,
    THREADS_ENV,
    default_threads,
    llamacpp_available,
)
from powersmc_core.models.names import parse_model_name

__all__ = [
    "BACKENDS",
    "FAST_INSTALL_HINT",
    "MAX_DEFAULT_THREADS",
    "THREADS_ENV",
    "BackendChoice",
    "backend_of",
    "choose_backend",
    "default_threads",
    "is_gguf_model",
    "llamacpp_available",
    "load_model_with_backend",
    "resolve_backend",
    "tag_backend",
]

BACKENDS = ("torch", "llamacpp", "auto")


@dataclass(frozen=True)
class BackendChoice:
    """The backend that will run (``name``: "torch" | "llamacpp") and why (one line)."""

    name: str
    reason: str


def is_gguf_model(model_name: str) -> bool:
    """True for names llama.cpp can run: the embedded model or a local ``.gguf`` file."""
    try:
        return parse_model_name(model_name).kind in ("embedded", "gguf")
    except ModelLoadError:
        return False


def choose_backend(
    model_name: str,
    backend: str = "auto",
    device: str | None = None,
    n_particles: int | None = None,
    threads: int | None = None,
) -> BackendChoice:
    """Resolve ``backend`` for ``model_name`` on ``device`` (None: torch's default device).

    ``auto`` for a GGUF model on the CPU with llama.cpp installed picks the backend
    with the smaller measured SMC ms/step at the row nearest (``n_particles``,
    ``threads``) (None: SMCConfig's default N, ``default_threads()``), from this
    machine's calibration or the shipped table (``backend_timings``); unmeasured
    models keep the plain rule (llama.cpp), and the reason says so.

    Raises ``ValueError`` for an unknown backend and ``ModelLoadError`` when
    ``"llamacpp"`` is asked for but cannot run (not GGUF, not CPU, not installed).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return BackendChoice("torch", "torch backend requested")
    gguf = is_gguf_model(model_name)
    cpu = runs_on_cpu(device)
    available, detail = llamacpp_available()
    if backend == "llamacpp":
        if not gguf:
            raise ModelLoadError(
                f"the llama.cpp backend runs GGUF models only (the embedded smollm2 or a local "
                f".gguf file), not {model_name!r}: use --backend torch"
            )
        if not cpu:
            raise ModelLoadError(
                f"the llama.cpp backend runs on the CPU; device {device!r} needs --backend torch"
            )
        if not available:
            raise ModelLoadError(detail)
        return BackendChoice("llamacpp", f"llama.cpp backend requested ({detail})")
    if not gguf:
        return BackendChoice("torch", "auto: not a GGUF model, so torch")
    if not cpu:
        return BackendChoice("torch", "auto: an accelerator is in use, so torch")
    if not available:
        return BackendChoice("torch", f"auto: torch, because {detail}")
    return _measured_choice(model_name, n_particles, threads, detail)


def _measured_choice(
    model_name: str, n_particles: int | None, threads: int | None, detail: str
) -> BackendChoice:
    """auto on a GGUF model on the CPU: the backend with the smaller measured ms/step."""
    from powersmc_core.engine.config import SMCConfig  # lazy: the engine imports models

    table = timing_table(model_name)
    if table is None:
        return BackendChoice(
            "llamacpp",
            f"auto: GGUF model on CPU, so llama.cpp (no timing measured for {model_name!r} on "
            f"this machine; `{CALIBRATE_HINT}` measures one) ({detail})",
        )
    n = SMCConfig().n_particles if n_particles is None else n_particles
    k = default_threads() if threads is None else threads
    if n < 1 or k < 1:
        raise ValueError(f"n_particles and threads must be >= 1, got {n} and {k}")
    row = lookup(table, n, k)
    name = "torch" if row.torch_ms < row.llamacpp_ms else "llamacpp"
    fast, slow = (
        (row.torch_ms, row.llamacpp_ms) if name == "torch" else (row.llamacpp_ms, row.torch_ms)
    )
    where = f"N = {row.n_particles}, {row.threads} thread{'s' if row.threads != 1 else ''}"
    asked = "" if (row.n_particles, row.threads) == (n, k) else f", nearest to N = {n}, {k}"
    given = "" if n_particles is not None else " (N not given: the default)"
    label = "torch" if name == "torch" else "llama.cpp"
    reason = (
        f"auto: {label}, measured {fast:.0f} vs {slow:.0f} ms/step at {where}{asked}{given} "
        f"({table.source})"
    )
    return BackendChoice(name, reason + (f"; {detail}" if name == "llamacpp" else ""))


def resolve_backend(
    model_name: str,
    backend: str = "auto",
    device: str | None = None,
    n_particles: int | None = None,
    threads: int | None = None,
) -> str:
    """``choose_backend(...).name``: "torch" or "llamacpp"."""
    return choose_backend(model_name, backend, device, n_particles, threads).name


def load_model_with_backend(
    name: str,
    backend: str = "auto",
    *,
    threads: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    n_particles: int | None = None,
    **torch_options: object,
) -> LanguageModel:
    """The shared model for ``name`` on the resolved backend; sets ``.backend``/``.backend_reason``.

    ``threads``: llama.cpp threads per run (None: ``default_threads()``); with
    ``n_particles`` it is also what ``auto`` looks its measurements up at.
    Instances stay shared per backend (each loader's own cache).
    ``torch_options`` (``trust_remote_code``, ``copy_on_write``) go to ``load_model``.
    """
    from powersmc_core.models.loading import load_model

    choice = choose_backend(name, backend, device, n_particles, threads)
    if choice.name == "llamacpp":
        from powersmc_core.models.llamacpp.model import load_llamacpp_model

        try:
            return load_llamacpp_model(name, threads=threads, reason=choice.reason)
        except Exception as err:
            if backend == "llamacpp":
                if isinstance(err, ModelLoadError):
                    raise
                raise ModelLoadError(
                    f"llama.cpp failed to load {name!r} ({type(err).__name__}: {err}); "
                    f"reinstall it ({FAST_INSTALL_HINT}) or use --backend torch"
                ) from err
            choice = BackendChoice(
                "torch", f"auto: llama.cpp failed ({type(err).__name__}: {err}); torch instead"
            )
    model = load_model(name, device=device, dtype=dtype, **torch_options)  # type: ignore[arg-type]
    return tag_backend(model, "torch", choice.reason)


def tag_backend(model: LanguageModel, backend: str, reason: str) -> LanguageModel:
    """``model`` with ``.backend`` and ``.backend_reason`` set (read back by ``backend_of``)."""
    with contextlib.suppress(AttributeError):  # a backend with __slots__ goes without
        model.backend = backend  # type: ignore[attr-defined]
        model.backend_reason = reason  # type: ignore[attr-defined]
    return model


def backend_of(model: LanguageModel) -> tuple[str, str]:
    """(backend name, reason) a loaded model carries; models without one (toys) report torch."""
    return (
        str(getattr(model, "backend", "torch")),
        str(getattr(model, "backend_reason", "torch backend")),
    )
