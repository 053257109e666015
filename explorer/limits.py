"""Server-wide run limits: a FIFO queue of run slots, per visitor and per address.

All Streamlit sessions share one process, so a module-level ``RunLimiter`` sees every
run. ``limiter.slot(visitor, on_wait, address=...)`` is a context manager:

* at most ``max_concurrent`` slots are held at once; later callers wait in FIFO order
  and ``on_wait(position, waited_s)`` is called about every ``poll_s`` while they do
  (position 1 = next in line), so the page can show "you are #2 in the queue";
* a visitor that already holds or awaits a slot gets ``SessionBusy`` at once (rapid
  repeated clicks, two Run buttons, a second tab);
* one client *address* holds at most ``runs_per_address`` slots and
  ``queue_per_address`` queue places, whatever cookies its sessions send
  (``AddressBusy``); a waiter whose address is at its run cap lets the next one pass;
* more than ``max_queue`` waiters → ``QueueFull`` at once; waiting longer than
  ``queue_timeout_s`` → ``QueueTimeout``;
* a held slot carries a deadline (``max_run_s`` after the run started): iterate through
  ``slot.bounded(updates)`` and the loop ends at the deadline with ``slot.timed_out``;
  jobs check ``slot.expired`` between model steps (``explorer.gate``);
* a slot is freed only when its job has really stopped: by its own release, or when the
  thread that took it is dead (it died without releasing). A job past its deadline that
  is still alive keeps its slot, so never more than ``max_concurrent`` jobs run at once.

The waiting loop runs in the caller's thread, so an exception raised by ``on_wait``
(Streamlit's stop/rerun exceptions) leaves the queue cleanly. Every error here is a
``LimitError`` whose message is fit to show as it is. Visitor keys and addresses come
from ``explorer.identity``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from explorer.settings import demo_settings

__all__ = [
    "AddressBusy",
    "LimitError",
    "QueueFull",
    "QueueTimeout",
    "RunLimiter",
    "RunSlot",
    "SessionBusy",
    "current_session_id",
    "global_limiter",
    "held_upload_bytes",
    "reset_global_limiter",
    "session_connected",
    "session_peer",
]

T = TypeVar("T")
log = logging.getLogger(__name__)


class LimitError(RuntimeError):
    """A run could not start now; the message says why and what to do."""


class SessionBusy(LimitError):
    pass


class QueueFull(LimitError):
    pass


class QueueTimeout(LimitError):
    pass


class AddressBusy(LimitError):
    pass


@dataclass
class _Ticket:
    number: int
    session: str
    address: str
    enqueued: float
    thread: threading.Thread = field(default_factory=threading.current_thread)
    started: float | None = None
    deadline: float | None = None
    overdue_logged: bool = False


class RunSlot:
    """One held run slot; a context manager (``__enter__`` waits, ``__exit__`` releases)."""

    def __init__(
        self,
        limiter: RunLimiter,
        session_id: str,
        on_wait: Callable[[int, float], None] | None,
        poll_s: float,
        run_age_s: float,
        address: str,
    ) -> None:
        self.limiter = limiter
        self.session_id = session_id
        self.address = address
        self.on_wait = on_wait
        self.poll_s = poll_s
        self.run_age_s = run_age_s
        self.ticket: _Ticket | None = None
        self.waited_s = 0.0
        self.timed_out = False

    def __enter__(self) -> RunSlot:
        self.ticket = self.limiter._acquire(
            self.session_id, self.address, self.on_wait, self.poll_s, self.run_age_s
        )
        self.waited_s = (self.ticket.started or 0.0) - self.ticket.enqueued
        return self

    def __exit__(self, *exc: object) -> None:
        if self.ticket is not None:
            self.limiter._release(self.ticket)

    @property
    def deadline(self) -> float:
        assert self.ticket is not None and self.ticket.deadline is not None, "slot not held"
        return self.ticket.deadline

    def time_left(self) -> float:
        """Seconds until the run-time cap (monotonic clock of the limiter)."""
        return self.deadline - self.limiter.clock()

    @property
    def expired(self) -> bool:
        return self.time_left() <= 0

    def bounded(self, items: Iterable[T]) -> Iterator[T]:
        """``items`` until the deadline; then stops and sets ``timed_out``.

        The item in flight when the deadline passes is still yielded (a step is never
        cut in half), so a run overshoots the cap by at most one step and one redraw.
        """
        for item in items:
            yield item
            if self.expired:
                self.timed_out = True
                return


class RunLimiter:
    """FIFO admission of runs: ``max_concurrent`` at a time, bounded queue, one slot per
    visitor, ``runs_per_address`` slots and ``queue_per_address`` places per address."""

    def __init__(
        self,
        max_concurrent: int,
        max_queue: int = 16,
        queue_timeout_s: float = 120.0,
        max_run_s: float = 60.0,
        grace_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        runs_per_address: int | None = None,
        queue_per_address: int | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.runs_per_address = max_concurrent if runs_per_address is None else runs_per_address
        self.queue_per_address = max_queue if queue_per_address is None else queue_per_address
        if self.runs_per_address < 1 or self.queue_per_address < 0:
            raise ValueError("runs_per_address must be >= 1 and queue_per_address >= 0")
        self.queue_timeout_s = queue_timeout_s
        self.max_run_s = max_run_s
        self.grace_s = grace_s
        self.clock = clock
        self._cond = threading.Condition()
        self._waiting: deque[_Ticket] = deque()
        self._active: dict[int, _Ticket] = {}
        self._sessions: dict[str, int] = {}
        self._numbers = itertools.count()
        self.reclaimed = 0  # slots taken back from threads that died holding them

    def slot(
        self,
        session_id: str,
        on_wait: Callable[[int, float], None] | None = None,
        poll_s: float = 0.5,
        run_age_s: float = 0.0,
        address: str = "unknown",
    ) -> RunSlot:
        """A slot for visitor ``session_id`` at client ``address``; the run-time cap counts
        from ``run_age_s`` ago.

        A run that resumes across Streamlit reruns passes its age (e.g. ``time.time() -
        live.created``) so that reruns cannot extend the cap.
        """
        return RunSlot(self, session_id, on_wait, poll_s, max(0.0, float(run_age_s)), address)

    def stats(self) -> dict[str, int]:
        """Slots held, places waiting, and held slots whose thread is still alive."""
        with self._cond:
            self._reap()
            return {
                "active": len(self._active),
                "alive": sum(t.thread.is_alive() for t in self._active.values()),
                "waiting": len(self._waiting),
                "max_concurrent": self.max_concurrent,
                "max_queue": self.max_queue,
                "reclaimed": self.reclaimed,
            }

    # ---- internals (all state changes under self._cond) -----------------------------------
    def _acquire(
        self,
        session: str,
        address: str,
        on_wait: Callable[[int, float], None] | None,
        poll_s: float,
        run_age_s: float,
    ) -> _Ticket:
        with self._cond:
            self._reap()
            if session in self._sessions:
                raise SessionBusy(
                    "a run is already in progress (or queued) for you, in this tab or another "
                    "tab of this browser; wait for it to finish or press Stop there"
                )
            must_wait = not self._can_start_now(address)
            if must_wait and len(self._waiting) >= self.max_queue:
                raise QueueFull(
                    f"the server is busy: {len(self._active)} runs decoding and "
                    f"{len(self._waiting)} waiting. Try again in a minute."
                )
            if must_wait and self._count(self._waiting, address) >= self.queue_per_address:
                running = self._count(self._active.values(), address)
                raise AddressBusy(
                    f"your network address already has {running} run(s) decoding and "
                    f"{self._count(self._waiting, address)} waiting, the most allowed per "
                    "network address; wait for one of them to finish"
                )
            ticket = _Ticket(next(self._numbers), session, address, self.clock())
            self._sessions[session] = ticket.number
            self._waiting.append(ticket)
        try:
            while True:
                with self._cond:
                    self._reap()
                    if self._next_eligible() is ticket:
                        self._waiting.remove(ticket)
                        now = self.clock()
                        ticket.started = now
                        ticket.deadline = now - run_age_s + self.max_run_s
                        self._active[ticket.number] = ticket
                        # Wake the next waiter too: more than one slot may be free.
                        self._cond.notify_all()
                        return ticket
                    waited = self.clock() - ticket.enqueued
                    if waited >= self.queue_timeout_s:
                        raise QueueTimeout(
                            f"waited {waited:.0f} s in the queue without a free slot; the server "
                            "is busy, try again later"
                        )
                    position = self._waiting.index(ticket) + 1
                    self._cond.wait(timeout=min(poll_s, self.queue_timeout_s - waited))
                if on_wait is not None:
                    on_wait(position, waited)  # outside the lock: it may draw, or raise
        except BaseException:
            with self._cond:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                if ticket.number not in self._active:
                    self._forget(ticket)
                self._cond.notify_all()
            raise

    @staticmethod
    def _count(tickets: Iterable[_Ticket], address: str) -> int:
        return sum(t.address == address for t in tickets)

    def _address_has_room(self, address: str) -> bool:
        return self._count(self._active.values(), address) < self.runs_per_address

    def _next_eligible(self) -> _Ticket | None:
        """The first waiter whose address may run one more, if a slot is free."""
        if len(self._active) >= self.max_concurrent:
            return None
        return next((t for t in self._waiting if self._address_has_room(t.address)), None)

    def _can_start_now(self, address: str) -> bool:
        return (
            not self._waiting
            and len(self._active) < self.max_concurrent
            and self._address_has_room(address)
        )

    def _release(self, ticket: _Ticket) -> None:
        with self._cond:
            self._active.pop(ticket.number, None)
            self._forget(ticket)
            self._cond.notify_all()

    def _forget(self, ticket: _Ticket) -> None:
        if self._sessions.get(ticket.session) == ticket.number:
            del self._sessions[ticket.session]

    def _reap(self) -> None:
        """Free slots whose thread died holding them; a live job keeps its slot, even late."""
        now = self.clock()
        for number, ticket in list(self._active.items()):
            if not ticket.thread.is_alive():
                del self._active[number]
                self._forget(ticket)
                self.reclaimed += 1
                self._cond.notify_all()
            elif (
                ticket.deadline is not None
                and now > ticket.deadline + self.grace_s
                and not ticket.overdue_logged
            ):
                ticket.overdue_logged = True
                log.warning(
                    "run %d is %.0f s past its run-time cap and still holds its slot",
                    number,
                    now - ticket.deadline,
                )


# ---- process-wide instance -------------------------------------------------------------------
_GLOBAL: RunLimiter | None = None
_GLOBAL_LOCK = threading.Lock()


def global_limiter(settings: object | None = None) -> RunLimiter:
    """The one limiter of this server process, built from ``DemoSettings`` on first use."""
    global _GLOBAL
    with _GLOBAL_LOCK:
        if _GLOBAL is None:
            s = settings if settings is not None else demo_settings()
            _GLOBAL = RunLimiter(
                max_concurrent=s.max_concurrent_runs,  # type: ignore[attr-defined]
                max_queue=s.max_queue,  # type: ignore[attr-defined]
                queue_timeout_s=s.queue_timeout_seconds,  # type: ignore[attr-defined]
                max_run_s=s.max_run_seconds,  # type: ignore[attr-defined]
                runs_per_address=s.runs_per_address,  # type: ignore[attr-defined]
                queue_per_address=s.queue_per_address,  # type: ignore[attr-defined]
            )
        return _GLOBAL


def reset_global_limiter() -> None:
    """Forget the process-wide limiter (tests; settings changed)."""
    global _GLOBAL
    with _GLOBAL_LOCK:
        _GLOBAL = None


def current_session_id() -> str:
    """The Streamlit session id of the running script ("no-session" outside Streamlit)."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx
    except ImportError:  # pragma: no cover - Streamlit is a dependency
        return "no-session"
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"


def _runtime() -> Any | None:
    """Streamlit's runtime of this server, or None outside one (scripts; AppTest mocks it)."""
    try:
        from streamlit.runtime import Runtime
    except ImportError:  # pragma: no cover - Streamlit is a dependency
        return None
    return Runtime.instance() if Runtime.exists() else None


def session_connected(session_id: str) -> bool:
    """False once the browser of ``session_id`` has gone (closed tab, dropped socket).

    Outside a Streamlit server (AppTest, scripts) every session counts as connected.
    """
    runtime = _runtime()
    return runtime is None or runtime.is_active_session(session_id) is not False


def session_peer(session_id: str) -> str | None:
    """The socket peer address of ``session_id``'s websocket (None outside a server)."""
    runtime = _runtime()
    client = runtime.get_client(session_id) if runtime is not None else None
    peer = getattr(getattr(client, "client_context", None), "remote_ip", None)
    return peer if isinstance(peer, str) else None  # AppTest's runtime is a mock


def held_upload_bytes(session_id: str) -> int:
    """Bytes of the uploaded files Streamlit holds for ``session_id`` (0 outside a server)."""
    runtime = _runtime()
    storage = getattr(getattr(runtime, "uploaded_file_mgr", None), "file_storage", {})
    files = storage.get(session_id, {}) if hasattr(storage, "get") else {}
    return sum(len(getattr(rec, "data", b"")) for rec in list(files.values()))
