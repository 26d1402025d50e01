"""Who may use the UI: the token, the Host header, and the headers on every response.

One ASGI middleware in front of everything (the page's files included), so no
route can forget it.
"""

import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from agentlog.logsdir import LogsDir, create_secret_file

COOKIE = "agentlog_ui"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def read_or_create_token(logs: LogsDir) -> str:
    """The logs directory's UI token (DIR/ui-token, 0600), made on first use."""
    if not logs.ui_token.exists():
        create_secret_file(logs.ui_token, secrets.token_urlsafe(32).encode() + b"\n")
    return logs.ui_token.read_text().strip()


def host_name(host: str) -> str:
    """The name in a Host header, without its port: `[::1]:8888` -> `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host: str | None, listen_host: str) -> bool:
    """Only names of this machine: a page on another name (DNS rebinding) gets nothing."""
    if not host:
        return False
    return host_name(host) in LOCAL_NAMES | {listen_host.strip("[]").lower()}


def _cookie(header: str) -> str | None:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


class Guard:
    """Host check (421), token check (401), the token cookie, the security headers."""

    def __init__(self, app: ASGIApp, token: str, listen_host: str) -> None:
        self.app, self.token, self.listen_host = app, token, listen_host

    def _valid(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if not host_allowed(headers.get("host"), self.listen_host):
            return await _answer(send, 421, "this UI answers only to localhost")
        params = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        from_query = next((v for k, v in params if k == "token"), None)
        bearer = headers.get("authorization", "")
        offered = [
            from_query,
            _cookie(headers.get("cookie", "")),
            bearer[7:].strip() if bearer[:7].lower() == "bearer " else None,
        ]
        if not any(self._valid(t) for t in offered):
            return await _answer(send, 401, "a token is needed: open the URL agentlog ui printed")
        extra: list[tuple[bytes, bytes]] = []
        if self._valid(from_query):
            cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            extra.append((b"set-cookie", cookie.encode()))
            if scope["path"] == "/" and scope.get("method") == "GET":
                rest = urlencode([(k, v) for k, v in params if k != "token"])
                location = "/" + (f"?{rest}" if rest else "")
                extra.append((b"location", location.encode()))
                return await _answer(send, 303, "see the page", extra)

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS, *extra]
            await send(message)

        await self.app(scope, receive, secured)


async def _answer(
    send: Send,
    status: int,
    detail: str,
    extra: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
