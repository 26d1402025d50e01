"""An HTTPS origin on 127.0.0.1 that answers like the services a coding agent calls
(a model API, package registries, a code host), for realistic traffic in the UI's
screenshot. Every name it serves is routed here by the proxy under test.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.fakes.certs import CA, issue_leaf

NAMES = (
    "api.anthropic.com",
    "registry.npmjs.org",
    "pypi.org",
    "files.pythonhosted.org",
    "github.com",
)


def _message_reply(request: bytes) -> dict:
    try:
        model = json.loads(request).get("model", "claude-sonnet-4-5")
    except ValueError:
        model = "claude-sonnet-4-5"
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [
            {"type": "text", "text": "I'll look at the failing test first."},
            {
                "type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9",
                "name": "bash",
                "input": {"command": "pytest tests/test_parser.py -x -q"},
            },
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 2095, "output_tokens": 503},
    }


def _answer(host: str, path: str, body: bytes) -> tuple[int, str, bytes]:
    """(status, content type, body) for a request to `host` `path`."""
    if host == "api.anthropic.com" and path.startswith("/v1/messages"):
        return 200, "application/json", json.dumps(_message_reply(body)).encode()
    if host == "registry.npmjs.org" and path.endswith(".tgz"):
        return 200, "application/octet-stream", bytes(range(256)) * 64
    if host == "registry.npmjs.org":
        name = path.strip("/") or "left-pad"
        doc = {"name": name, "dist-tags": {"latest": "4.17.21"}, "versions": {"4.17.21": {}}}
        return 200, "application/json", json.dumps(doc).encode()
    if host == "pypi.org" and path.startswith("/simple/"):
        return (
            200,
            "text/html",
            b"<!DOCTYPE html><html><body><a href='#'>pkg-1.0.tar.gz</a></body></html>",
        )
    if host == "pypi.org":
        return 404, "text/plain", b"Not Found\n"
    if host == "github.com" and "/info/refs" in path:
        return (
            200,
            "application/x-git-upload-pack-advertisement",
            b"001e# service=git-upload-pack\n0000",
        )
    if host == "files.pythonhosted.org":
        return 503, "text/plain", b"upstream connect error\n"
    return 200, "text/plain", b"ok\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        host = (self.headers.get("host") or "").split(":")[0]
        status, content_type, payload = _answer(host, self.path, body)
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.send_header("x-request-id", "req_011CSHoEeqs5C35K2UUqR7Fy")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tls = tls

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.tls.wrap_socket(sock, server_side=True), address


class FakeServices:
    """`with FakeServices(ca, directory) as services:` serves NAMES on services.port."""

    def __init__(self, ca: CA, directory: Path) -> None:
        cert, key = issue_leaf(ca, list(NAMES)).write(directory, "services")
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        tls.set_alpn_protocols(["http/1.1"])
        self.server = _Server(tls)
        self.port = self.server.server_address[1]

    def __enter__(self) -> FakeServices:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def proxy_args(self) -> list[str]:
        """Allow these names only, each routed to this server."""
        args: list[str] = []
        for name in NAMES:
            args += ["--allow", name, "--route", f"{name}=127.0.0.1:{self.port}"]
        return args
