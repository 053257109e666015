"""The server's door (explorer.guard) and who is asking (explorer.identity), at the ASGI level.

A fake inner app stands for Streamlit: each test drives the guard with the raw scopes a
scripted client would send, so every bound is checked without a browser. The real server
behind the same guard is driven by tests/test_scripted_client.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from explorer.guard import DemoGuard
from explorer.identity import (
    VISITOR_COOKIE,
    client_address,
    issue_visitor_cookie,
    verified_visitor,
)
from explorer.serve import demo_server_options
from explorer.settings import demo_settings

DEMO = demo_settings({"POWERSMC_DEMO": "1"})


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Inner:
    """Streamlit's routes: counts calls; a websocket stays open until ``release`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            await self.release.wait()
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def scope(kind: str, path: str, peer: str = "203.0.113.5", method: str = "GET", **headers: str):
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {"type": kind, "path": path, "client": (peer, 5000), "method": method, "headers": raw}


async def call(guard: DemoGuard, s: dict) -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return (
            {"type": "websocket.connect"} if s["type"] == "websocket" else {"type": "http.request"}
        )

    async def send(message: dict) -> None:
        sent.append(message)

    await guard(s, receive, send)
    return sent


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_one_address_gets_a_bounded_number_of_open_sessions_and_another_address_still_gets_in():
    async def scenario() -> tuple[list[str], list[str], int]:
        inner = Inner()
        guard = DemoGuard(inner, replace(DEMO, sessions_per_address=3), FakeClock())
        stream = "/_stcore/stream"
        tasks = [asyncio.create_task(call(guard, scope("websocket", stream))) for _ in range(5)]
        other = asyncio.create_task(call(guard, scope("websocket", stream, peer="198.51.100.7")))
        await asyncio.sleep(0.05)
        first = [t.done() for t in tasks]  # refused ones return at once
        inner.release.set()
        results = await asyncio.gather(*tasks, other)
        kinds = [r[-1]["type"] for r in results]
        return [str(f) for f in first], kinds, guard.open_sessions.get("203.0.113.5", 0)

    first, kinds, still_open = run(scenario())
    assert first == ["False", "False", "False", "True", "True"]
    assert kinds[:3] == ["websocket.accept"] * 3
    assert kinds[3:5] == ["websocket.close"] * 2  # refused before accept: HTTP 403
    assert kinds[5] == "websocket.accept" and still_open == 0


def test_new_sessions_per_minute_are_bounded_per_address():
    async def scenario() -> list[str]:
        inner = Inner()
        inner.release.set()  # each session closes at once: only the rate can refuse
        clock = FakeClock()
        guard = DemoGuard(inner, replace(DEMO, new_sessions_per_minute=4), clock)
        kinds = []
        for second in range(6):
            clock.now = float(second)
            kinds.append((await call(guard, scope("websocket", "/_stcore/stream")))[-1]["type"])
        clock.now = 61.0  # the window has moved on
        kinds.append((await call(guard, scope("websocket", "/_stcore/stream")))[-1]["type"])
        return kinds

    kinds = run(scenario())
    assert kinds == ["websocket.accept"] * 4 + ["websocket.close"] * 2 + ["websocket.accept"]


@pytest.mark.parametrize(
    ("headers", "held", "status"),
    [
        ({}, 0, 411),  # no Content-Length: the guard cannot bound it
        ({"content_length": str(6 * 2**20)}, 0, 413),  # over the 5 MB demo cap
        ({"content_length": str(4 * 2**20)}, 7 * 2**20, 413),  # the session holds too much
        ({"content_length": str(4 * 2**20)}, 5 * 2**20, 200),  # within both
    ],
)
def test_upload_puts_are_bounded_per_request_and_per_session(headers, held, status):
    inner = Inner()
    guard = DemoGuard(inner, DEMO, FakeClock(), held=lambda session: held)
    path = "/_stcore/upload_file/session-1/file-1"
    sent = run(call(guard, scope("http", path, method="PUT", **headers)))
    assert sent[0]["status"] == status
    assert inner.calls == (1 if status == 200 else 0)  # a refusal never reaches Streamlit


def test_pages_set_a_signed_visitor_cookie_once_and_never_trust_a_forged_one():
    guard = DemoGuard(Inner(), DEMO, FakeClock())
    first = run(call(guard, scope("http", "/")))[0]["headers"]
    cookie = dict(first)[b"set-cookie"].decode()
    value = cookie.split(";")[0].split("=", 1)[1]
    assert cookie.startswith(f"{VISITOR_COOKIE}=") and "HttpOnly" in cookie
    assert verified_visitor(value) is not None
    again = run(call(guard, scope("http", "/live_smc", cookie=f"{VISITOR_COOKIE}={value}")))
    assert b"set-cookie" not in dict(again[0]["headers"])  # a valid cookie is kept
    forged = run(call(guard, scope("http", "/", cookie=f"{VISITOR_COOKIE}=mine.abc")))
    assert b"set-cookie" in dict(forged[0]["headers"])  # a forged one is replaced
    assets = run(call(guard, scope("http", "/static/js/main.js")))
    assert b"set-cookie" not in dict(assets[0]["headers"])


def test_cookie_minting_is_rate_limited_per_address():
    guard = DemoGuard(Inner(), replace(DEMO, new_sessions_per_minute=3), FakeClock())
    minted = [b"set-cookie" in dict(run(call(guard, scope("http", "/")))[0]["headers"])]
    minted += [b"set-cookie" in dict(run(call(guard, scope("http", "/")))[0]["headers"])]
    minted += [b"set-cookie" in dict(run(call(guard, scope("http", "/")))[0]["headers"])]
    minted += [b"set-cookie" in dict(run(call(guard, scope("http", "/")))[0]["headers"])]
    assert minted == [True, True, True, False]


def test_signed_cookies_do_not_verify_under_another_key(monkeypatch):
    value = issue_visitor_cookie()
    assert verified_visitor(value) is not None
    monkeypatch.setenv("POWERSMC_SECRET", "another-server")
    assert verified_visitor(value) is None


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.5", "1.2.3.4", (), "203.0.113.5"),  # no trusted proxy: the header is ignored
        ("10.0.0.2", "1.2.3.4", ("10.0.0.0/8",), "1.2.3.4"),
        ("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.9", ("10.0.0.0/8",), "1.2.3.4"),  # right-most
        ("10.0.0.2", "not-an-ip, 1.2.3.4", ("10.0.0.0/8",), "1.2.3.4"),
        ("10.0.0.2", "", ("10.0.0.0/8",), "10.0.0.2"),
        ("2001:db8:1:2:aaaa::1", "", (), "2001:db8:1:2::/64"),  # IPv6 counts as its /64
        ("::ffff:198.51.100.7", "", (), "198.51.100.7"),
        (None, "", (), "unknown"),
    ],
)
def test_client_address(peer, forwarded, trusted, expected):
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    assert client_address(peer, headers, trusted) == expected


def test_the_launcher_passes_the_demo_byte_caps_to_streamlit():
    assert demo_server_options(DEMO) == [
        "--server.maxUploadSize=5",
        "--server.maxMessageSize=16",
        "--server.maxWidgetStateSize=1",
        "--server.enableAgentApi=false",
        "--server.disconnectedSessionTTL=60",
    ]
    assert demo_server_options(demo_settings({})) == []
