"""The server's door: per-address bounds on Streamlit's own endpoints, before any session.

``DemoGuard`` is an ASGI middleware that ``explorer.serve`` puts in front of Streamlit's
routes. A scripted client talks to those routes directly (raw websockets, raw HTTP), so
the bounds that no page can enforce are enforced here, per client address
(``identity.client_address``; ``X-Forwarded-For`` only from ``POWERSMC_TRUSTED_PROXIES``):

* ``/_stcore/stream`` (one websocket = one session): at most ``sessions_per_address``
  open at once and ``new_sessions_per_minute`` opened per rolling minute; beyond that
  the upgrade is refused (HTTP 403) before Streamlit creates a session.
* ``PUT /_stcore/upload_file/<session>/<file>``: a ``Content-Length`` is required and
  must be within the upload cap (Streamlit's ``maxUploadSize`` streams the body under
  the same cap), and the session may hold at most ``max_held_upload_bytes`` of uploaded
  files (Streamlit keeps every file until the session ends): 413 beyond.
* pages (``GET`` of the app's HTML): the response sets the signed ``powersmc_visitor``
  cookie when the request has no valid one (``identity.issue_visitor_cookie``), at most
  ``new_sessions_per_minute`` new cookies per address per minute.

Every refusal is logged (``explorer.guard``) with a hash of the address, never the
address itself.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from explorer.identity import (
    VISITOR_COOKIE,
    client_address,
    issue_visitor_cookie,
    short_hash,
    verified_visitor,
)
from explorer.limits import current_session_id, held_upload_bytes, session_peer
from explorer.settings import DemoSettings, demo_settings

__all__ = ["DemoGuard", "guard_installed", "mark_installed"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_INSTALLED = False
_WINDOW_S = 60.0
_COOKIE_AGE_S = 30 * 24 * 3600
_MAX_TRACKED = 4096
_NOT_PAGES = ("/_stcore/", "/static/", "/media/", "/component/", "/app/static/")


def mark_installed() -> None:
    """Record that this process serves through the guard (``explorer.serve`` calls it)."""
    global _INSTALLED
    _INSTALLED = True


def guard_installed() -> bool:
    """True when the guard is in front of this process's server, or the session has no
    network client (AppTest, scripts): a public demo started without it must not serve."""
    if _INSTALLED:
        return True
    return session_peer(current_session_id()) is None


class DemoGuard:
    """ASGI middleware; see the module docstring for what it bounds."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        settings: DemoSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        held: Callable[[str], int] = held_upload_bytes,
    ) -> None:
        self.app = app
        self.settings = settings if settings is not None else demo_settings()
        self.clock = clock
        self.held = held
        # The event loop runs every call on one thread: plain dicts need no lock.
        self.open_sessions: dict[str, int] = defaultdict(int)
        self.opened: dict[str, deque[float]] = defaultdict(deque)
        self.minted: dict[str, deque[float]] = defaultdict(deque)
        self.pruned_at = -_WINDOW_S

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        path = str(scope.get("path", ""))
        if kind == "websocket" and path.endswith("/_stcore/stream"):
            await self._session(scope, receive, send)
            return
        if kind == "http":
            method = scope.get("method")
            if method == "PUT" and "/_stcore/upload_file/" in path:
                refusal = self._upload_refusal(scope, path)
                if refusal is not None:
                    await self._refuse_http(scope, send, *refusal)
                    return
            elif method == "GET" and not any(part in path for part in _NOT_PAGES):
                await self.app(scope, receive, self._with_cookie(scope, send))
                return
        await self.app(scope, receive, send)

    # ---- who --------------------------------------------------------------------------
    def address(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else None
        # Starlette's Headers keeps repeated X-Forwarded-For lines (a dict kept the last).
        return client_address(peer, Headers(scope=scope), self.settings.trusted_proxies)

    def _recent(self, times: deque[float]) -> int:
        now = self.clock()
        while times and now - times[0] > _WINDOW_S:
            times.popleft()
        return len(times)

    def _prune(self) -> None:
        """Drop addresses with nothing in the window, so many addresses cannot grow the maps."""
        now = self.clock()
        if now - self.pruned_at < _WINDOW_S / 6:
            return
        self.pruned_at = now
        for table in (self.opened, self.minted):
            if len(table) > _MAX_TRACKED:
                for address in [a for a, times in table.items() if not self._recent(times)]:
                    del table[address]

    # ---- websocket sessions -----------------------------------------------------------
    async def _session(self, scope: Scope, receive: Receive, send: Send) -> None:
        address = self.address(scope)
        self._prune()
        why = None
        if self.open_sessions[address] >= self.settings.sessions_per_address:
            why = f"{self.open_sessions[address]} sessions open"
        elif self._recent(self.opened[address]) >= self.settings.new_sessions_per_minute:
            why = f"{len(self.opened[address])} sessions opened in the last minute"
        if why is not None:
            log.warning("session refused: address=%s %s", short_hash(address), why)
            await receive()  # the websocket.connect event
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
            return
        self.opened[address].append(self.clock())
        self.open_sessions[address] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open_sessions[address] -= 1
            if self.open_sessions[address] <= 0:
                del self.open_sessions[address]

    # ---- uploads ----------------------------------------------------------------------
    def _upload_refusal(self, scope: Scope, path: str) -> tuple[int, str] | None:
        raw = Headers(scope=scope).get("content-length")
        if raw is None:
            return 411, "an upload must state its Content-Length"
        try:
            size = int(raw)
        except ValueError:
            return 400, "invalid Content-Length"
        cap = self.settings.max_upload_bytes
        if size > cap + 64 * 1024:  # room for the multipart envelope around the file
            return 413, f"an upload may be at most {cap / 2**20:.1f} MB"
        session = path.split("/_stcore/upload_file/", 1)[1].split("/", 1)[0]
        held = self.held(session)
        if held + size > self.settings.max_held_upload_bytes:
            log.warning(
                "upload refused: address=%s session holds %d bytes",
                short_hash(self.address(scope)),
                held,
            )
            return 413, (
                f"this session already holds {held / 2**20:.1f} MB of uploads; "
                "reload the page to start afresh"
            )
        return None

    @staticmethod
    async def _refuse_http(scope: Scope, send: Send, status: int, message: str) -> None:
        body = message.encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    # ---- visitor cookie ---------------------------------------------------------------
    def _with_cookie(self, scope: Scope, send: Send) -> Send:
        if verified_visitor(_cookie(scope, VISITOR_COOKIE)) is not None:
            return send
        address = self.address(scope)
        if self._recent(self.minted[address]) >= self.settings.new_sessions_per_minute:
            return send  # the page still loads; its visitor counts as its session only
        self.minted[address].append(self.clock())
        value = issue_visitor_cookie()
        cookie = (
            f"{VISITOR_COOKIE}={value}; Path=/; Max-Age={_COOKIE_AGE_S}; HttpOnly; SameSite=Lax"
        )

        async def send_with_cookie(message: MutableMapping[str, Any]) -> None:
            if message.get("type") == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"set-cookie", cookie.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        return send_with_cookie


def _cookie(scope: Scope, name: str) -> str | None:
    """Cookie ``name`` of the request, parsed as Starlette parses it for its routes."""
    return cookie_parser("; ".join(Headers(scope=scope).getlist("cookie"))).get(name)
