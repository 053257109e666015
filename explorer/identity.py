"""Who is asking: the client address and a visitor identity a client cannot mint at will.

* ``client_address(peer, headers, trusted)``: the socket peer, or, when the peer is a
  trusted proxy (``POWERSMC_TRUSTED_PROXIES``), the right-most ``X-Forwarded-For`` hop
  that is not itself a trusted proxy. A client can write any ``X-Forwarded-For`` it
  likes, so the header counts only when a configured proxy vouches for it. An IPv6
  client counts as its /64 network (one host is routinely given a whole /64).
* ``issue_visitor_cookie()`` / ``verified_visitor(value)``: the value of the
  ``powersmc_visitor`` cookie is ``token.signature``, an HMAC-SHA256 of the token under
  the server's key (``POWERSMC_SECRET``, else random per process). The server sets it
  (``explorer.guard``); a value the server did not sign is ignored, so a script cannot
  choose someone's identity, and rotating cookies only makes it a new session.
* ``visitor_key(cookie, session)``: one browser across its tabs when its cookie is
  signed, else the session. Bounds that scripts must not multiply are per address too
  (``explorer.limits``, ``explorer.guard``).
* ``short_hash(text)``: what the server log keeps of a key or an address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Iterable, Mapping

__all__ = [
    "UNKNOWN_ADDRESS",
    "VISITOR_COOKIE",
    "client_address",
    "issue_visitor_cookie",
    "short_hash",
    "verified_visitor",
    "visitor_key",
]

VISITOR_COOKIE = "powersmc_visitor"
UNKNOWN_ADDRESS = "unknown"
_SECRET_ENV = "POWERSMC_SECRET"
_PROCESS_KEY = secrets.token_bytes(32)


def _key() -> bytes:
    raw = os.environ.get(_SECRET_ENV, "")
    return raw.encode() if raw else _PROCESS_KEY


def _signature(token: str) -> str:
    digest = hmac.new(_key(), token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def issue_visitor_cookie() -> str:
    """A fresh ``token.signature`` cookie value."""
    token = secrets.token_urlsafe(18)
    return f"{token}.{_signature(token)}"


def verified_visitor(value: str | None) -> str | None:
    """The token of a cookie value this server signed, else None (forged, truncated, empty)."""
    if not value or len(value) > 128 or value.count(".") != 1:
        return None
    token, signature = value.split(".")
    if not token or not hmac.compare_digest(signature, _signature(token)):
        return None
    return token


def short_hash(text: str) -> str:
    """12 hex digits of SHA-256: enough to follow one visitor through a log, not to reverse."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def visitor_key(cookies: Mapping[str, str] | None, session: str) -> str:
    """The signed visitor cookie's token (hashed) when valid, else the session."""
    token = verified_visitor(cookies.get(VISITOR_COOKIE) if cookies else None)
    if token is not None:
        return "visitor:" + hashlib.sha256(token.encode()).hexdigest()[:24]
    return "session:" + session


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "1.2.3.4:5678"
        text = text.split(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Iterable[str]) -> bool:
    return any(ip in ipaddress.ip_network(net, strict=False) for net in networks)


def client_address(
    peer: str | None, headers: Mapping[str, str] | None, trusted: Iterable[str] = ()
) -> str:
    """The address a request counts against (see the module docstring)."""
    trusted = tuple(trusted)
    ip = _ip(peer)
    if ip is None:
        return UNKNOWN_ADDRESS
    if not trusted or not _trusted(ip, trusted):
        return _unit(ip)
    forwarded = ""
    for name, value in (headers or {}).items():
        if name.lower() == "x-forwarded-for":
            forwarded = f"{forwarded},{value}" if forwarded else value
    for hop in reversed([h for h in forwarded.split(",") if h.strip()]):
        hop_ip = _ip(hop)
        if hop_ip is None:  # a malformed hop: stop at the last address a proxy vouched for
            break
        ip = hop_ip
        if not _trusted(hop_ip, trusted):
            break
    return _unit(ip)


def _unit(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An IPv4 address, or the /64 of an IPv6 one (one host usually holds a whole /64)."""
    if isinstance(ip, ipaddress.IPv6Address) and not ip.is_loopback:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
