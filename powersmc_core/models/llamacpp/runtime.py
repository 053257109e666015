"""Whether llama.cpp can run here, and how many threads it gets: standard library only.

Both sides of the llama.cpp backend ask this module: ``models.backends`` (which
backend runs) and ``models.llamacpp`` (the backend itself), so neither imports the
other. Importing it imports neither torch nor ``llama_cpp``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

__all__ = [
    "FAST_INSTALL_HINT",
    "MAX_DEFAULT_THREADS",
    "THREADS_ENV",
    "default_threads",
    "llamacpp_available",
]

FAST_INSTALL_HINT = (
    "run `make fast` (or `pip install -r requirements-llamacpp.txt`; it compiles llama.cpp "
    "once, a few minutes)"
)
THREADS_ENV = ("POWERSMC_THREADS", "OMP_NUM_THREADS")
# A 135M-parameter model stops gaining from threads beyond ~4 (memory-bound), and
# concurrent app sessions each run their own context: leave cores for them.
MAX_DEFAULT_THREADS = 4


def llamacpp_available() -> tuple[bool, str]:
    """(True, version line) when ``llama_cpp`` imports, else (False, what went wrong and the fix)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return False, f"llama-cpp-python is not installed: {FAST_INSTALL_HINT}"
    try:
        module = importlib.import_module("llama_cpp")
    except Exception as err:  # a broken build raises OSError/ImportError/anything at import
        return False, (
            f"llama-cpp-python is installed but fails to import ({type(err).__name__}: {err}); "
            f"reinstall it: {FAST_INSTALL_HINT}"
        )
    return True, f"llama-cpp-python {getattr(module, '__version__', '?')}"


def default_threads() -> int:
    """``$POWERSMC_THREADS``, else ``$OMP_NUM_THREADS``, else min(4, usable CPUs)."""
    for variable in THREADS_ENV:
        value = os.environ.get(variable, "").strip()
        if value:
            try:
                threads = int(value)
            except ValueError:
                raise ValueError(f"{variable}={value!r} is not a whole number of threads") from None
            if threads < 1:
                raise ValueError(f"{variable}={value!r}: the thread count must be >= 1")
            return threads
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows have no affinity mask
        usable = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_THREADS, usable))
