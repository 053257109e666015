"""llama.cpp plumbing for ``llamacpp.py``: the library, the shared weights, one context per run.

* ``library()``: the ``llama_cpp`` ctypes module, backend initialised once, its
  logging quietened (it prints every load line to stderr otherwise);
* ``weights(path)``: one ``llama_model`` per GGUF file per process (mmapped,
  thread-safe load), shared by every context;
* ``Context``: a llama context with one KV stream per sequence and a preallocated
  batch whose arrays are numpy views, so a step's batch is a few vectorised writes
  and its logits come back as a tensor over llama.cpp's buffer (no copy);
* ``SeqSnapshot``: the cells one sequence uses, read with ``llama_state_seq_get_data``
  and written into any sequence of any context of the same model (``Context.write``):
  a copy costs the prefix's cells, not the stream's.

Why not ``llama_memory_seq_cp``: with one stream per sequence it copies the destination
stream's WHOLE buffer at the next decode (every cell the stream holds, used or not:
2.3 ms at 512 cells, 10 ms at 2048, whatever the prefix), and it cannot cross contexts.

The sequence state buffer (llama.cpp's ``llama_kv_cache::state_write``, the version
llama-cpp-python 0.3.36 bundles) is::

    [8 bytes written before the cache, kept as they are][u32 n_stream]
    per stream: [u32 cell_count] and, when cell_count > 0,
        meta: cell_count x (i32 pos, u32 n_seq_id = 1, i32 seq_id)
        data: u32 v_trans, u32 n_layer, per layer K: (i32 type, u64 row bytes, cells x row),
              V likewise, or when v_trans: (i32 type, u32 element bytes, u32 n_embd,
              n_embd x cells x element)

``state_read`` refuses a buffer whose n_stream differs from the context's, and writes
every non-empty stream block into the destination sequence's stream; so a snapshot
enters a context with a different number of streams as [the same 8 bytes][n_stream of
the destination][the source's block][n_stream - 1 empty counts]. ``_stream_block``
parses the whole buffer and raises ``StateLayoutError`` when it does not add up (a
llama.cpp whose layout differs), instead of writing garbage into a cache.
"""

from __future__ import annotations

import ctypes
import logging
import struct
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from powersmc_core.models.errors import ModelLoadError
from powersmc_core.models.llamacpp import runtime

__all__ = [
    "CELL_PAD",
    "FILL_BATCH",
    "MAX_SEQUENCES",
    "Context",
    "SeqSnapshot",
    "StateLayoutError",
    "Weights",
    "library",
    "weights",
]

# Tokens per llama_decode call when (re)filling a context (the prompt, a regrowth).
FILL_BATCH = 512
# llama.cpp rounds each sequence's stream up to a multiple of 256 cells (measured in
# 0.3.36: 40 cells asked -> 256 held, 300 -> 512); ``Context.per_seq`` reads back what it got.
CELL_PAD = 256
# Sequences one context holds (llama.cpp's LLAMA_MAX_SEQ; a 300-sequence context failed).
MAX_SEQUENCES = 256


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
        # Work counters (tests count work instead of timing it): sequence copies written
        # into this context, the cells they held, and llama_decode calls.
        self.copies = 0
        self.cells_copied = 0
        self.decodes = 0
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
        self.decodes += 1
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
        """Free every cell of sequence ``seq``."""
        self.lib.llama_memory_seq_rm(self.memory, int(seq), -1, -1)

    # ---- cell-exact copies -------------------------------------------------------------
    def read(self, seq: int) -> SeqSnapshot:
        """The cells sequence ``seq`` uses (positions, keys, values), as a snapshot."""
        size = int(self.lib.llama_state_seq_get_size(self.pointer, int(seq)))
        buffer = np.empty(size, dtype=np.uint8)
        written = int(
            self.lib.llama_state_seq_get_data(
                self.pointer, buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), size, int(seq)
            )
        )
        if written != size:
            raise StateLayoutError(f"llama_state_seq_get_data wrote {written} of {size} bytes")
        return SeqSnapshot.parse(buffer, self.n_seq)

    def write(self, snapshot: SeqSnapshot, dest: int) -> None:
        """Sequence ``dest`` := the snapshot's cells (its old cells are dropped first)."""
        if snapshot.cells == 0:  # nothing to copy: state_read would leave dest as it was
            self.remove(dest)
            return
        buffer = snapshot.for_streams(self.n_seq)
        done = int(
            self.lib.llama_state_seq_set_data(
                self.pointer,
                buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)),
                buffer.size,
                int(dest),
            )
        )
        if done == 0:
            raise RuntimeError(
                f"llama_state_seq_set_data refused a {snapshot.cells}-cell sequence into "
                f"sequence {dest} of a context of {self.n_seq} x {self.per_seq} cells "
                "(no room, or another model's state)"
            )
        self.copies += 1
        self.cells_copied += snapshot.cells

    def copy(self, source: int, dest: int | Sequence[int]) -> None:
        """Sequence(s) ``dest`` := sequence ``source``: one read, one write per destination;
        each write costs the cells ``source`` uses (its prefix), whatever the context size."""
        snapshot = self.read(source)
        for seq in [dest] if isinstance(dest, int | np.integer) else dest:
            self.write(snapshot, int(seq))

    def copy_stream(self, source: int, dest: int) -> None:
        """``llama_memory_seq_cp``: copies dest's whole stream at the next decode (the bench's
        reference; the backend uses ``copy``)."""
        self.lib.llama_memory_seq_cp(self.memory, int(source), int(dest), -1, -1)


class StateLayoutError(RuntimeError):
    """A sequence state buffer that is not laid out as this module expects."""

    def __init__(self, detail: str) -> None:
        version = getattr(library(), "__version__", "?")
        super().__init__(
            f"llama.cpp's sequence state buffer is not laid out as expected ({detail}); "
            f"llama-cpp-python {version} differs from the 0.3.36 layout the cell-exact copy "
            "reads (see powersmc_core/models/llamacpp/context.py)"
        )


_HEAD = 8  # bytes written before the KV cache's state, carried over unchanged
_U32, _I32_U64 = struct.Struct("<I"), struct.Struct("<iQ")
_V_TRANS_LAYER = struct.Struct("<iII")  # i32 type, u32 element bytes, u32 n_embd


@dataclass(frozen=True)
class SeqSnapshot:
    """One sequence's state buffer, parsed: ``cells`` used, its stream block [start, end).

    ``for_streams(n)`` is the buffer ``llama_state_seq_set_data`` accepts in a context of n
    streams (the original when n matches, else the block re-framed; cached per n).
    """

    buffer: np.ndarray
    n_stream: int
    cells: int
    start: int
    end: int

    @staticmethod
    def parse(buffer: np.ndarray, n_stream: int) -> SeqSnapshot:
        """Parse ``buffer`` (from a context of ``n_stream`` streams); at most one stream
        may hold cells (one sequence, one stream). Raises ``StateLayoutError``."""
        data = memoryview(buffer)  # parsed in place: a prefix's buffer is MBs
        try:
            (found,) = _U32.unpack_from(data, _HEAD)
            if found != n_stream:
                raise StateLayoutError(f"{found} streams in the header, the context has {n_stream}")
            offset, blocks = _HEAD + 4, []
            for _ in range(found):
                start = offset
                offset, cells = _stream_block(data, offset)
                if cells:
                    blocks.append((cells, start, offset))
        except struct.error as err:
            raise StateLayoutError(f"buffer ends early: {err}") from None
        if offset != len(data):
            raise StateLayoutError(f"parsed {offset} bytes of {len(data)}")
        if len(blocks) > 1:
            raise StateLayoutError(f"{len(blocks)} streams hold cells of one sequence")
        cells, start, end = blocks[0] if blocks else (0, offset, offset)
        return SeqSnapshot(buffer, n_stream, cells, start, end)

    def for_streams(self, n_stream: int) -> np.ndarray:
        """The buffer for a context of ``n_stream`` streams: [head][n][block][n - 1 zeros]."""
        if n_stream == self.n_stream:
            return self.buffer
        cache = self.__dict__.setdefault("_framed", {})
        if n_stream not in cache:
            count = np.frombuffer(_U32.pack(n_stream), dtype=np.uint8)
            empty = np.zeros(4 * (n_stream - 1), dtype=np.uint8)  # n - 1 streams, 0 cells
            block = self.buffer[self.start : self.end]
            cache[n_stream] = np.concatenate([self.buffer[:_HEAD], count, block, empty])
        return cache[n_stream]


def _stream_block(data: memoryview, offset: int) -> tuple[int, int]:
    """(offset after the stream block at ``offset``, its cell count); struct.error if short."""
    (cells,) = _U32.unpack_from(data, offset)
    offset += 4
    if cells == 0:
        return offset, 0
    meta = np.frombuffer(data, dtype=np.int32, count=3 * cells, offset=offset).reshape(cells, 3)
    if (meta[:, 1] != 1).any():
        raise StateLayoutError("a cell of a single-sequence state names several sequences")
    offset += 12 * cells
    v_trans, n_layer = struct.unpack_from("<II", data, offset)
    offset += 8
    if v_trans not in (0, 1) or not 0 < n_layer < 4096:
        raise StateLayoutError(f"v_trans = {v_trans}, n_layer = {n_layer}")
    for _ in range(n_layer):  # K: i32 type, u64 row bytes, one row per cell
        _, row = _I32_U64.unpack_from(data, offset)
        offset += _I32_U64.size + cells * row
    for _ in range(n_layer):
        if v_trans:  # V transposed: element bytes and width, n_embd x cells elements
            _, element, n_embd = _V_TRANS_LAYER.unpack_from(data, offset)
            offset += _V_TRANS_LAYER.size + n_embd * cells * element
        else:
            _, row = _I32_U64.unpack_from(data, offset)
            offset += _I32_U64.size + cells * row
    if offset > len(data):
        raise struct.error(f"a stream block of {cells} cells runs past the buffer")
    return offset, cells
