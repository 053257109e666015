"""llama.cpp plumbing for ``llamacpp.py``: the library, the shared weights, one context per run.

* ``library()``: the ``llama_cpp`` ctypes module, backend initialised once, its
  logging quietened (it prints every load line to stderr otherwise);
* ``weights(path)``: one ``llama_model`` per GGUF file per process (mmapped,
  thread-safe load), shared by every context;
* ``Context``: a llama context with one KV stream per sequence and a preallocated
  batch whose arrays are numpy views, so a step's batch is a few vectorised writes
  and its logits come back as a tensor over llama.cpp's buffer (no copy).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from powersmc_core.models.errors import ModelLoadError
from powersmc_core.models.llamacpp import runtime

__all__ = ["CELL_PAD", "FILL_BATCH", "Context", "Weights", "library", "weights"]

# Tokens per llama_decode call when (re)filling a context (the prompt, a regrowth).
FILL_BATCH = 512
# llama.cpp rounds a context up to a multiple of 256 cells per sequence.
CELL_PAD = 256


# ---- the library and the shared weights -------------------------------------------------
def library() -> Any:
    """The ``llama_cpp`` module (ctypes bindings), backend initialised, logging quiet."""
    ok, detail = runtime.llamacpp_available()  # looked up here so a test can patch it
    if not ok:
        raise ModelLoadError(detail)
    import llama_cpp

    # Its default logger prints every load/context line to stderr.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    with _LOCK:
        global _BACKEND_READY
        if not _BACKEND_READY:
            llama_cpp.llama_backend_init()
            _BACKEND_READY = True
    return llama_cpp


_LOCK = threading.Lock()
_BACKEND_READY = False
_WEIGHTS: dict[str, Weights] = {}


class Weights:
    """One loaded ``llama_model`` (the GGUF weights, mmapped), shared by all contexts."""

    def __init__(self, lib: Any, path: Path) -> None:
        params = lib.llama_model_default_params()
        params.n_gpu_layers = 0
        pointer = lib.llama_model_load_from_file(str(path).encode(), params)
        if not pointer:
            raise ModelLoadError(
                f"llama.cpp could not load {path}: check the file (is it a GGUF model its "
                "version supports?) or use --backend torch"
            )
        self.lib, self.path, self.pointer = lib, path, pointer
        vocab = lib.llama_model_get_vocab(pointer)
        self.vocab_size = int(lib.llama_vocab_n_tokens(vocab))
        self.n_ctx_train = int(lib.llama_model_n_ctx_train(pointer))
        self.size_bytes = int(lib.llama_model_size(pointer))


def weights(path: Path) -> Weights:
    """The shared ``Weights`` for ``path``, loaded on first use (thread-safe)."""
    lib = library()
    key = str(path.resolve())
    with _LOCK:
        if key not in _WEIGHTS:
            _WEIGHTS[key] = Weights(lib, path)
        return _WEIGHTS[key]


# ---- one context per run ----------------------------------------------------------------
class Context:
    """A llama context plus a preallocated batch whose arrays are numpy views.

    The batch struct points into numpy arrays (one sequence id per token), so filling
    a step's batch is a few vectorised writes, and the logits come back as a view.
    """

    def __init__(self, weights: Weights, per_seq: int, n_seq: int, threads: int) -> None:
        lib = weights.lib
        self.lib, self.weights, self.per_seq, self.n_seq = lib, weights, per_seq, n_seq
        self.capacity = max(n_seq, FILL_BATCH)  # tokens per decode call
        params = lib.llama_context_default_params()
        per_seq = -(-per_seq // CELL_PAD) * CELL_PAD  # llama.cpp pads to this anyway
        params.n_ctx = per_seq * n_seq  # split evenly: per_seq cells for each sequence
        params.n_batch = self.capacity
        params.n_ubatch = self.capacity
        params.n_seq_max = n_seq
        params.n_threads = threads
        params.n_threads_batch = threads
        # One KV stream per sequence. The unified cache (cells shared by tag) gave rows
        # 0.3-0.8 nats off a fresh decode after seq_rm + seq_cp in 0.3.36; streams are exact.
        params.kv_unified = False
        params.no_perf = True
        pointer = lib.llama_init_from_model(weights.pointer, params)
        if not pointer:
            raise ModelLoadError(
                f"llama.cpp could not create a context of {per_seq} cells for each of {n_seq} rows "
                "(out of memory?): lower N or the number of new tokens"
            )
        self.pointer = pointer
        self.per_seq = int(lib.llama_n_ctx(pointer)) // n_seq  # llama.cpp may round it up
        self.memory = lib.llama_get_memory(pointer)
        # Frees the context when the last state holding it is dropped (or at exit).
        self._free = weakref.finalize(self, lib.llama_free, pointer)
        cap = self.capacity
        self.tokens = np.zeros(cap, dtype=np.int32)
        self.positions = np.zeros(cap, dtype=np.int32)
        self.seq_ids = np.zeros(cap, dtype=np.int32)
        self.n_seq_id = np.ones(cap, dtype=np.int32)
        self.want = np.zeros(cap, dtype=np.int8)
        int32_p = ctypes.POINTER(ctypes.c_int32)
        base = self.seq_ids.ctypes.data
        self._seq_ptrs = (int32_p * cap)(*(ctypes.cast(base + 4 * i, int32_p) for i in range(cap)))
        self.batch = lib.llama_batch(
            n_tokens=0,
            token=self.tokens.ctypes.data_as(int32_p),
            embd=None,
            pos=self.positions.ctypes.data_as(int32_p),
            n_seq_id=self.n_seq_id.ctypes.data_as(int32_p),
            seq_id=self._seq_ptrs,
            logits=self.want.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
        )

    def decode(
        self,
        tokens: np.ndarray,
        positions: np.ndarray | int,
        seqs: np.ndarray,
        logits: bool | np.ndarray,
    ) -> int:
        """One ``llama_decode`` of len(tokens) <= capacity tokens; returns its status.

        0 ok, 1 no room in the cache (nothing was written); raises on real errors.
        """
        count = len(tokens)
        self.tokens[:count] = tokens
        self.positions[:count] = positions
        self.seq_ids[:count] = seqs
        self.want[:count] = logits
        self.batch.n_tokens = count
        status = int(self.lib.llama_decode(self.pointer, self.batch))
        if status not in (0, 1):
            raise RuntimeError(f"llama_decode failed with status {status}")
        return status

    def logits(self, rows: int) -> torch.Tensor:
        """The last decode's (rows, V) logits as a tensor over llama.cpp's buffer (no copy).

        Valid until the next decode: callers log-softmax it at once (a new tensor).
        """
        pointer = self.lib.llama_get_logits(self.pointer)
        view = np.ctypeslib.as_array(pointer, shape=(rows, self.weights.vocab_size))
        return torch.from_numpy(view)

    def remove(self, seq: int) -> None:
        self.lib.llama_memory_seq_rm(self.memory, int(seq), -1, -1)

    def copy(self, source: int, dest: int) -> None:
        self.lib.llama_memory_seq_cp(self.memory, int(source), int(dest), -1, -1)
