"""A misbehaving agent is normal input: the proxy keeps serving and records what happened."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import PLAIN, UPSTREAM
from tests.harness import closed, curl, verify

pytestmark = pytest.mark.timeout(60)


def raw(proxy, data: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(data)
        if not read:
            return b""
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def still_serving(proxy) -> None:
    assert curl(proxy, f"https://{UPSTREAM}/hello").stdout == b"hello"


def verify_ok(proxy) -> None:
    result = verify(proxy.logs)
    assert result.returncode == 0, result.stdout


def test_garbage_is_refused_and_recorded_nowhere(proxy):
    assert raw(proxy, b"\x00\x01\x02 not http at all\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert proxy.events("request") == []  # no request was made, none is recorded
    still_serving(proxy)
    verify_ok(proxy)


def test_oversized_header_is_recorded_whole(proxy):
    huge = b"GET http://plain.test/big HTTP/1.1\r\nHost: plain.test\r\nX-Big: " + b"a" * 300_000
    assert raw(proxy, huge + b"\r\n\r\n").startswith(b"HTTP/1.1 431")  # the upstream's verdict
    proxy.wait_for(closed("response"))
    request, response = proxy.exchange("/big")
    assert len(request["headers"]["x-big"]) == 300_000 and response["status"] == 431
    still_serving(proxy)
    verify_ok(proxy)


def test_content_length_with_chunked_is_refused_before_the_upstream(proxy, upstream):
    """Request smuggling: both framings at once. mitmproxy refuses it; nothing is forwarded."""
    reply = raw(
        proxy,
        b"GET http://plain.test/smuggle HTTP/1.1\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\nHost: plain.test\r\n\r\n0\r\n\r\nGET /second HTTP/1.1\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 400") and b"transfer-encoding and content-length" in reply
    assert not any("/smuggle" in hit or "/second" in hit for hit in upstream.hits)
    still_serving(proxy)
    verify_ok(proxy)


def test_hostile_header_bytes_are_recorded_as_text(proxy):
    evil = b"X-Evil: \xff\xfe\x1b[31mred\x07 <script>alert(1)</script>\r\n"
    reply = raw(
        proxy,
        b"GET http://"
        + PLAIN.encode()
        + b"/echo?evil=1 HTTP/1.1\r\nHost: "
        + PLAIN.encode()
        + b"\r\n"
        + evil
        + b"Connection: close\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 200")
    proxy.wait_for(lambda es: any(e["event"] == "response" for e in es))
    request, _ = proxy.exchange("/echo?evil=1")
    assert "<script>" in request["headers"]["x-evil"]  # kept as text, for the UI to escape
    assert request["headers"]["x-evil"].startswith("\\xff\\xfe")  # not UTF-8: escaped
    verify_ok(proxy)


def test_client_gone_mid_upload_is_an_error_event(proxy):
    raw(
        proxy,
        b"POST http://plain.test/echo?cut=1 HTTP/1.1\r\nHost: plain.test\r\n"
        b"Content-Length: 100000\r\n\r\n" + b"x" * 10,
        read=False,
    )
    events = proxy.wait_for(lambda es: any(e["event"] == "error" for e in es))
    request = next(e for e in events if e["event"] == "request")
    error = next(e for e in events if e["event"] == "error")
    assert request["path"] == "/echo?cut=1" and error["id"] == request["id"]
    still_serving(proxy)


def test_tunnel_carrying_no_tls(proxy):
    reply = raw(
        proxy,
        f"CONNECT {UPSTREAM}:443 HTTP/1.1\r\nHost: {UPSTREAM}:443\r\n\r\n".encode()
        + b"this is not a TLS client hello\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 200")
    still_serving(proxy)
    verify_ok(proxy)


def test_many_abandoned_connections(proxy, agent_tls):
    sockets = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        s.sendall(f"CONNECT {UPSTREAM}:443 HTTP/1.1\r\n\r\n".encode())
        sockets.append(s)
    for s in sockets[:50]:
        tls = agent_tls.wrap_socket(s, server_hostname=UPSTREAM, do_handshake_on_connect=False)
        tls.close()
    for s in sockets[50:]:
        s.close()
    still_serving(proxy)
    # None of them carried a request, so none may appear as one.
    assert [e["path"] for e in proxy.events("request")] == ["/hello"]
    verify_ok(proxy)
