"""A scripted Streamlit client speaking the raw protocol, as a hostile script would.

No browser: one HTTP GET of the page (its ``Set-Cookie`` kept, ignored or replaced by
forged cookies), then the websocket ``/_stcore/stream`` carrying protobufs:

* BackMsg ``rerun_script`` (``ClientState``: page by url path name or script hash, query
  string, ``WidgetStates``);
* ForwardMsg ``new_session`` (session id, pages), ``delta`` (elements by delta path: texts,
  alerts, exceptions, progress, widget ids and keys), ``script_finished``.

Handshake (streamlit/web/server/starlette/starlette_websocket.py, 1.67): the origin is
checked only when an ``Origin`` header is sent; ``Sec-WebSocket-Protocol`` is
``streamlit, <xsrf token>, <existing session id>``, the XSRF token counting only for
auth cookies. Uploads (starlette_routes.py ``_upload_put``): ``PUT
/_stcore/upload_file/<session>/<file_id>`` with one multipart file, header
``X-Xsrftoken`` equal (unmasked) to the ``_streamlit_xsrf`` cookie: double submit, so a
script may forge both. The server accepts any ``file_id``; a widget then points at it
through ``file_uploader_state_value``.

Usage::

    async with Client(url, local_addr="127.0.0.2") as c:
        await c.open("live_smc", query="model=smollm2&n=32&tokens=96")
        await c.press("live_run")
        await c.wait_for(lambda c: c.find("step ") or c.alerts(), timeout=60)

Every wait has a timeout (``asyncio.TimeoutError`` after it). Plain asyncio sockets, so a
client can bind another loopback source address (Linux routes 127/8 to lo).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

__all__ = [
    "Client",
    "HttpReply",
    "LogReader",
    "Refused",
    "forged_xsrf",
    "http_request",
    "server_rss",
]

XSRF_COOKIE = "_streamlit_xsrf"
ALERT_KINDS = {1: "error", 2: "warning", 3: "info", 4: "success"}  # Alert.Format
WIDGET_KINDS = (
    "button",
    "checkbox",
    "file_uploader",
    "multiselect",
    "number_input",
    "radio",
    "selectbox",
    "slider",
    "text_area",
    "text_input",
)


class Refused(Exception):
    """The server refused the websocket: an HTTP status on upgrade, or a close code."""

    def __init__(self, status: int | None = None, code: int | None = None, why: str = "") -> None:
        super().__init__(f"websocket refused: status={status} code={code} {why}".strip())
        self.status = status
        self.code = code


def forged_xsrf() -> str:
    """A well-formed ``_streamlit_xsrf`` value the server never issued (a made-up cookie)."""
    return generate_xsrf_token_string(os.urandom(16))


# ---- HTTP (minimal HTTP/1.1 over asyncio, so the source address can be chosen) ----------
@dataclass
class HttpReply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def cookies(self) -> dict[str, str]:
        """``Set-Cookie`` name=value pairs (attributes dropped)."""
        out = {}
        for name, value in self.headers:
            if name.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                key, _, val = pair.partition("=")
                out[key.strip()] = val.strip()
        return out


async def http_request(
    url: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    local_addr: str | None = None,
    timeout: float = 30,
) -> HttpReply:
    """One request on a fresh connection (``Connection: close``); reads the reply to EOF."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def exchange() -> HttpReply:
        reader, writer = await asyncio.open_connection(
            parts.hostname,
            parts.port,
            local_addr=(local_addr, 0) if local_addr else None,
        )
        received = bytearray()

        async def read_reply() -> None:
            with contextlib.suppress(ConnectionError):  # a refusal may end in a reset
                while chunk := await reader.read(1 << 16):
                    received.extend(chunk)

        # Read while sending: a server may answer 413 before reading the body and close
        # (then the rest of the body is not sent, and the reply is already in hand).
        replying = asyncio.create_task(read_reply())
        try:
            writer.write(head)
            with contextlib.suppress(ConnectionError):
                for i in range(0, len(body), 1 << 20):
                    if replying.done() or received:
                        break
                    writer.write(body[i : i + (1 << 20)])
                    await writer.drain()
            await replying
        finally:
            replying.cancel()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        raw = bytes(received)
        header_blob, _, payload = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = header_blob.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1]) if status_line else 0
        pairs = [tuple(h.split(":", 1)) for h in header_lines if ":" in h]
        reply_headers = [(k.strip(), v.strip()) for k, v in pairs]
        if any(k.lower() == "transfer-encoding" and "chunked" in v for k, v in reply_headers):
            payload = _dechunk(payload)
        return HttpReply(status, reply_headers, payload)

    return await asyncio.wait_for(exchange(), timeout)


def _dechunk(data: bytes) -> bytes:
    out, rest = b"", data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def multipart(name: str, data: bytes, content_type: str = "application/octet-stream") -> tuple:
    """A one-file ``multipart/form-data`` body and its Content-Type, as the frontend sends."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{name}"\r\nContent-Type: {content_type}\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


# ---- the websocket session ---------------------------------------------------------------
@dataclass
class Widget:
    id: str
    kind: str
    proto: Any


@dataclass
class Client:
    """One scripted visitor: optional page GET for cookies, then one websocket session.

    ``cookies``: sent on every request (forged ones included); ``get_page``: GET the app
    page first and keep what it sets (a browser does; a script may not); ``headers``:
    extra request headers (``X-Forwarded-For``); ``local_addr``: source address.
    """

    url: str
    cookies: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    local_addr: str | None = None
    get_page: bool = True
    session_id: str | None = None
    pages: dict[str, str] = field(default_factory=dict)  # url path name -> script hash
    elements: dict[tuple[int, ...], Element] = field(default_factory=dict)
    widgets: dict[str, Widget] = field(default_factory=dict)  # user key -> widget
    values: dict[str, Any] = field(default_factory=dict)  # widget id -> WidgetState fields
    finished: int = 0  # script_finished messages seen
    runs: int = 0  # script runs started (new_session messages)
    closed: ConnectionClosed | None = None
    page: str = ""
    query: str = ""
    ws: ClientConnection | None = None
    _reader: asyncio.Task | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # ---- connection --------------------------------------------------------------------
    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def request_headers(self) -> dict[str, str]:
        out = dict(self.headers)
        if self.cookies:
            out["Cookie"] = self.cookie_header()
        return out

    async def fetch_page(self, path: str = "/") -> HttpReply:
        """GET the app page, then ``/_stcore/health`` (where Streamlit sets its XSRF cookie),
        as a browser's first requests; keeps the cookies both set. The page's reply."""
        reply = await http_request(
            self.url + path, headers=self.request_headers(), local_addr=self.local_addr
        )
        self.cookies.update(reply.cookies())
        health = await http_request(
            self.url + "/_stcore/health", headers=self.request_headers(), local_addr=self.local_addr
        )
        self.cookies.update(health.cookies())
        return reply

    async def connect(self, timeout: float = 30) -> None:
        """Open ``/_stcore/stream`` (``Refused`` if the upgrade is refused or closed at once)."""
        if self.get_page:
            await self.fetch_page()
        ws_url = "ws" + self.url[len("http") :] + "/_stcore/stream"
        protocols = ["streamlit", self.cookies.get(XSRF_COOKIE) or "PLACEHOLDER_AUTH_TOKEN"]
        options: dict[str, Any] = {}
        if self.local_addr:
            options["local_addr"] = (self.local_addr, 0)
        try:
            self.ws = await connect(
                ws_url,
                subprotocols=protocols,  # type: ignore[arg-type]
                additional_headers=self.request_headers(),
                max_size=None,
                open_timeout=timeout,
                ping_interval=None,
                **options,
            )
        except InvalidStatus as err:
            raise Refused(status=err.response.status_code) from None
        except ConnectionClosed as err:
            raise Refused(code=err.rcvd.code if err.rcvd else None) from None
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        """Close the websocket (a browser tab closing); the server sees a disconnect."""
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                msg = ForwardMsg()
                msg.ParseFromString(raw if isinstance(raw, bytes) else raw.encode())
                self._handle(msg)
                self._changed.set()
        except ConnectionClosed as err:
            self.closed = err
        else:
            self.closed = ConnectionClosed(self.ws.close_rcvd, self.ws.close_sent)
        self._changed.set()

    def _handle(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self.runs += 1
            self.elements.clear()
            init = msg.new_session.initialize
            if init.session_id:
                self.session_id = init.session_id
            for page in msg.new_session.app_pages:
                self.pages[page.url_pathname] = page.page_script_hash
        elif kind == "navigation":
            for page in msg.navigation.app_pages:
                self.pages[page.url_pathname] = page.page_script_hash
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            element = msg.delta.new_element
            self.elements[tuple(msg.metadata.delta_path)] = element
            widget = element.WhichOneof("type")
            if widget in WIDGET_KINDS:
                proto = getattr(element, widget)
                key = _user_key(proto.id)
                if key:
                    self.widgets[key] = Widget(proto.id, widget, proto)
        elif kind == "script_finished":
            self.finished += 1

    # ---- what the page shows ----------------------------------------------------------
    def texts(self) -> list[str]:
        """Every element's visible text (markdown, alerts, exceptions, progress, toasts…)."""
        return [t for e in self._ordered() if (t := _text(e))]

    def alerts(self, *kinds: str) -> list[str]:
        """Alert bodies (``error``, ``warning``, ``info``, ``success``) and exceptions."""
        out = []
        for e in self._ordered():
            what = e.WhichOneof("type")
            if what == "alert" and (not kinds or ALERT_KINDS.get(e.alert.format) in kinds):
                out.append(e.alert.body)
            elif what == "exception" and (not kinds or "error" in kinds):
                out.append(f"{e.exception.type}: {e.exception.message}")
        return out

    def find(self, needle: str) -> str | None:
        """The first element text containing ``needle`` (case-insensitive), else None."""
        low = needle.lower()
        return next((t for t in self.texts() if low in t.lower()), None)

    def _ordered(self) -> list[Element]:
        return [self.elements[k] for k in sorted(self.elements)]

    # ---- driving the script ------------------------------------------------------------
    async def rerun(self, page: str | None = None, query: str | None = None) -> None:
        """Send ``rerun_script`` with the current widget values (one-shot triggers cleared
        afterwards, as the frontend does)."""
        assert self.ws is not None, "connect first"
        self.page = self.page if page is None else page
        self.query = self.query if query is None else query
        back = BackMsg()
        state = back.rerun_script
        state.query_string = self.query
        if self.page in self.pages:
            state.page_script_hash = self.pages[self.page]
        state.page_name = self.page
        for wid, value in self.values.items():
            widget = state.widget_states.widgets.add()
            widget.id = wid
            _assign(widget, value)
        state.context_info.timezone = "UTC"
        state.context_info.url = f"{self.url}/{self.page}"
        self.values = {k: v for k, v in self.values.items() if v[0] != "trigger_value"}
        await self.ws.send(back.SerializeToString())

    async def open(self, page: str = "", query: str = "", timeout: float = 90) -> None:
        """Run a page script to its end (first run of the session or navigation)."""
        before = self.finished
        await self.rerun(page, query)
        await self.wait_for(lambda c: c.finished > before, timeout)

    def set(self, key: str, value: Any) -> None:
        """Give the widget with user key ``key`` a value, sent with the next rerun."""
        widget = self.widget(key)
        field_name = {
            "checkbox": "bool_value",
            "text_area": "string_value",
            "text_input": "string_value",
            "number_input": "double_value",  # ints too (Streamlit 1.67 sends doubles)
            "slider": "double_array_value",
            "selectbox": "string_value",
            "radio": "string_value",
            "multiselect": "string_array_value",
        }.get(widget.kind)
        if field_name is None:
            raise ValueError(f"no setter for a {widget.kind}")
        if field_name in ("double_array_value", "string_array_value") and not isinstance(
            value, list | tuple
        ):
            value = [value]
        if field_name == "double_value":
            value = float(value)
        self.values[widget.id] = (field_name, value)

    async def press(self, key: str, timeout: float = 30) -> None:
        """Press the button ``key`` (``trigger_value``) and rerun."""
        await self.wait_for(lambda c: key in c.widgets, timeout)
        self.values[self.widgets[key].id] = ("trigger_value", True)
        await self.rerun()

    def widget(self, key: str) -> Widget:
        if key not in self.widgets:
            raise KeyError(f"no widget with key {key!r}; seen: {sorted(self.widgets)}")
        return self.widgets[key]

    async def wait_for(
        self, condition: Callable[[Client], Any], timeout: float = 60, poll: float = 0.25
    ) -> Any:
        """Wait (at most ``timeout`` s) until ``condition(self)`` is truthy; returns it.

        Raises ``ConnectionClosed`` if the socket closes first, ``TimeoutError`` after
        ``timeout`` (naming the page's last texts)."""
        deadline = time.monotonic() + timeout
        while True:
            result = condition(self)
            if result:
                return result
            if self.closed is not None:
                raise self.closed
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"condition not met in {timeout:g} s; page: {self.texts()[-6:]}")
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(poll, left))

    # ---- uploads ------------------------------------------------------------------------
    async def put_file(
        self, name: str, data: bytes, file_id: str | None = None, timeout: float = 60
    ) -> tuple[int, str]:
        """PUT one file into this session's upload store; (HTTP status, file id).

        Forges the XSRF pair (cookie + header) when the session has no cookie."""
        assert self.session_id, "no session id yet: open a page first"
        file_id = file_id or str(uuid.uuid4())
        xsrf = self.cookies.setdefault(XSRF_COOKIE, forged_xsrf())
        body, content_type = multipart(name, data)
        headers = {**self.request_headers(), "X-Xsrftoken": xsrf, "Content-Type": content_type}
        reply = await http_request(
            f"{self.url}/_stcore/upload_file/{self.session_id}/{file_id}",
            "PUT",
            headers,
            body,
            self.local_addr,
            timeout,
        )
        return reply.status, file_id

    async def upload(self, key: str, name: str, data: bytes, timeout: float = 90) -> int:
        """Upload through the file uploader ``key``: PUT, then rerun with the widget pointing
        at the file (as the frontend does); the PUT's status. Waits for the script run."""
        status, file_id = await self.put_file(name, data)
        if status >= 300:
            return status
        widget = self.widget(key)
        info = {"name": name, "size": len(data), "file_id": file_id}
        self.values[widget.id] = ("file_uploader_state_value", info)
        before = self.finished
        await self.rerun()
        await self.wait_for(lambda c: c.finished > before, timeout)
        return status


# ---- helpers ---------------------------------------------------------------------------------
def _user_key(element_id: str) -> str | None:
    """``$$ID-<hash>-<key>`` -> key (None for a widget without a user key)."""
    match = re.match(r"^\$\$ID-[0-9a-f]+-(.+)$", element_id)
    return match.group(1) if match else None


def _text(e: Element) -> str:
    what = e.WhichOneof("type")
    if what == "markdown":
        return e.markdown.body
    if what == "alert":
        return e.alert.body
    if what == "exception":
        return f"{e.exception.type}: {e.exception.message}"
    if what == "progress":
        return e.progress.text
    if what == "heading":
        return e.heading.body
    if what == "text":
        return e.text.body
    if what == "toast":
        return e.toast.body
    if what == "code":
        return e.code.code_text
    return ""


def _assign(widget: Any, value: tuple[str, Any]) -> None:
    name, v = value
    if name in ("double_array_value", "string_array_value", "int_array_value"):
        getattr(widget, name).data.extend(v)
    elif name == "file_uploader_state_value":
        info = widget.file_uploader_state_value.uploaded_file_info.add()
        info.name, info.size, info.file_id = v["name"], v["size"], v["file_id"]
    else:
        setattr(widget, name, v)


# ---- the server process --------------------------------------------------------------------
def server_rss(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes (``VmRSS`` of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class LogReader:
    """The server log (a file): lines since a mark, lines matching a pattern, waits."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.start = 0

    def lines(self) -> list[str]:
        text = self.path.read_text(errors="replace") if self.path.exists() else ""
        return text.splitlines()

    def mark(self) -> int:
        """Count lines written so far; ``since`` reads only what comes after."""
        self.start = len(self.lines())
        return self.start

    def since(self, pattern: str | None = None) -> list[str]:
        new = self.lines()[self.start :]
        return [ln for ln in new if pattern is None or re.search(pattern, ln)]

    def wait(self, pattern: str, count: int = 1, timeout: float = 60) -> list[str]:
        """Wait until at least ``count`` new lines match ``pattern``; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.since(pattern)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(found)}/{count} lines matching {pattern!r} in {timeout} s"
                )
            time.sleep(0.2)

    @staticmethod
    def fields(line: str) -> dict[str, str]:
        """``key=value`` pairs of a journal line; a value runs to the next ``word=`` (so
        ``outcome=timed out`` keeps both words), separators comma, semicolon or space."""
        return dict(re.findall(r"(\w+)=(.*?)(?=[,;]?\s+\w+=|[,;]?\s*$)", line))


async def gather_clients(clients: Iterable[Client]) -> list[BaseException | None]:
    """Connect several clients at once; each slot holds None or the exception it raised."""
    results = await asyncio.gather(*(c.connect() for c in clients), return_exceptions=True)
    return [r if isinstance(r, BaseException) else None for r in results]
