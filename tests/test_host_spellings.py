"""Other spellings of a denied host, through the real proxy: each one is refused and recorded.

The proxy denies 127.0.0.1, where `victim` listens, and allows each attack
spelling by name (so only canonicalisation can refuse them); `decoy`, on
127.0.0.2, is an allowed destination that shows the proxy still serves.
Nothing here resolves a name but `localhost`; every other name is routed.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import free_port
from tests.harness import RunningProxy, agentlog, start_proxy, verify
from tests.netns import AgentNamespace, can_make_namespaces

pytestmark = pytest.mark.timeout(90)

HOMOGRAPH = "g\u043e\u043egle.test"  # Cyrillic о twice
HOMOGRAPH_ASCII = "xn--ggle-55da.test"
SPELLINGS = [  # all 127.0.0.1
    "2130706433",
    "0x7f000001",
    "127.1",
    "0177.0.0.1",
    "127.000.000.001",
    "127.0.0.1.",
    "0",  # 0.0.0.0: Linux connects it to loopback
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
]
CLOSE = "Connection: close\r\n\r\n"
RAW_TCP = b"\x00\x01 neither HTTP nor TLS\r\n"  # mitmproxy makes a raw TCP tunnel of it


class Listener:
    """A TCP server that notes each connection's first line and answers 200 `ok`."""

    def __init__(self, host: str) -> None:
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while b"\n" not in data and (chunk := conn.recv(4096)):
                        data += chunk
                except OSError:
                    pass
                self.seen.append(data.split(b"\r\n")[0].decode("latin-1"))
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def victim() -> Iterator[Listener]:
    listener = Listener("127.0.0.1")
    yield listener
    listener.close()


@pytest.fixture
def decoy() -> Iterator[Listener]:
    listener = Listener("127.0.0.2")
    yield listener
    listener.close()


@pytest.fixture
def proxy(tmp_path, victim, decoy) -> Iterator[RunningProxy]:
    args = ["--deny", "127.0.0.1", "--deny", "evil.test"]
    for name in [*SPELLINGS, "localhost", "routed.test", "ok.test", "evil.test.", HOMOGRAPH_ASCII]:
        args += ["--allow", name]
    args += ["--route", f"routed.test=127.0.0.1:{victim.port}"]
    for name in ("ok.test", "evil.test.", HOMOGRAPH_ASCII):
        args += ["--route", f"{name}=127.0.0.2:{decoy.port}"]
    running = start_proxy(tmp_path / "logs", *args)
    yield running
    assert running.stop() == 0
    assert verify(running.logs).returncode == 0


def send(proxy: RunningProxy, *messages: bytes) -> bytes:
    """Send each message after reading the answer to the one before; the last answer in full."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        reply = b""
        for i, message in enumerate(messages):
            s.sendall(message)
            reply = s.recv(65536) if i < len(messages) - 1 else b""
        try:
            while chunk := s.recv(65536):
                reply += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return reply


def blocked(proxy: RunningProxy, count: int) -> list[dict]:
    events = proxy.wait_for(lambda es: sum(e["event"] == "blocked" for e in es) >= count)
    return [e for e in events if e["event"] == "blocked"]


def curl(proxy: RunningProxy, url: str, *args: str) -> bytes:
    cmd = ["curl", "-sS", "--max-time", "20", "-x", proxy.url, *args, url]
    return subprocess.run(cmd, capture_output=True, timeout=30, check=False).stdout


def test_absolute_form_spellings_are_refused_and_recorded(proxy, victim, decoy):
    for i, spelling in enumerate(SPELLINGS):
        request = f"GET http://{spelling}:{victim.port}/spell-{i} HTTP/1.1\r\n"
        reply = send(proxy, f"{request}Host: {spelling}:{victim.port}\r\n{CLOSE}".encode())
        assert reply.startswith(b"HTTP/1.1 403"), (spelling, reply)
        assert b"agentlog: blocked 127.0.0.1:" in reply or b"agentlog: blocked 0.0.0.0:" in reply
    events = blocked(proxy, len(SPELLINGS))
    assert [e["rule"] for e in events] == ["deny 127.0.0.1"] * len(SPELLINGS)
    assert {e["domain"] for e in events} == {"127.0.0.1", "0.0.0.0"}  # recorded canonically
    assert victim.seen == []
    assert curl(proxy, "http://ok.test/fine") == b"ok" and decoy.seen == ["GET /fine HTTP/1.1"]


def test_connect_targets_are_refused_before_any_tunnel(proxy, victim):
    """A CONNECT is judged by its target, in any spelling, before mitmproxy answers 200:
    neither an HTTP request nor raw bytes can follow through it."""
    for spelling in SPELLINGS:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(f"CONNECT {spelling}:{victim.port} HTTP/1.1\r\n\r\n".encode())
            reply = read_response(s)
        assert reply.startswith(b"HTTP/1.1 403") and b"agentlog: blocked" in reply, spelling
    refused = blocked(proxy, len(SPELLINGS))
    # recorded in one spelling (0.0.0.0 is where "0" goes; it is denied as loopback)
    assert {e["domain"] for e in refused} == {"127.0.0.1", "0.0.0.0"}
    assert victim.seen == []


def read_response(s: socket.socket) -> bytes:
    """One HTTP response with a Content-Length body, without waiting for the close."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":", 1)[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def test_host_header_spellings_are_refused(proxy, victim, decoy):
    for spelling in SPELLINGS:
        request = f"GET http://ok.test/host-header HTTP/1.1\r\nHost: {spelling}\r\n{CLOSE}"
        assert send(proxy, request.encode()).startswith(b"HTTP/1.1 403"), spelling
    assert decoy.seen == [] and victim.seen == []


def test_names_that_reach_a_denied_address_are_refused_saying_which(proxy, victim):
    for name in ("localhost", "LOCALHOST.", "routed.test"):
        reply = send(proxy, f"GET http://{name}:{victim.port}/by-name HTTP/1.1\r\n{CLOSE}".encode())
        assert reply.startswith(b"HTTP/1.1 403"), (name, reply)
    # A raw tunnel to a name is judged at the connect, by the address it resolves to.
    send(proxy, f"CONNECT localhost:{victim.port} HTTP/1.1\r\n\r\n".encode(), RAW_TCP)
    reasons = [e["reason"] for e in blocked(proxy, 3)]
    assert reasons == [
        "rule 'deny 127.0.0.1': localhost resolves to 127.0.0.1",
        "rule 'deny 127.0.0.1': localhost resolves to 127.0.0.1",
        "rule 'deny 127.0.0.1': routed.test is routed to 127.0.0.1",
    ]
    assert victim.seen == []


def test_trailing_dot_and_case_do_not_pass_a_name_rule(proxy, decoy):
    for host in ("evil.test.", "EVIL.test.", "Evil.Test"):
        reply = send(proxy, f"GET http://{host}/dot HTTP/1.1\r\n{CLOSE}".encode())
        assert b"rule 'deny evil.test'" in reply, (host, reply)
    assert {e["domain"] for e in blocked(proxy, 3)} == {"evil.test"}
    assert decoy.seen == []


def test_homographs_are_recorded_in_ascii_with_unicode_beside(proxy, decoy):
    assert curl(proxy, f"http://{HOMOGRAPH}/idn") == b"ok"  # curl sends the xn-- form
    refused = curl(proxy, "http://\u0430pple.test/idn-refused")  # Cyrillic а
    assert b"agentlog: blocked xn--pple-43d.test:80" in refused
    events = blocked(proxy, 1)
    request = next(e for e in proxy.events("request") if e["path"] == "/idn")
    assert request["domain"] == HOMOGRAPH_ASCII and request["domain_unicode"] == HOMOGRAPH
    assert (events[0]["domain"], events[0]["domain_unicode"]) == (
        "xn--pple-43d.test",
        "\u0430pple.test",
    )
    assert decoy.seen == ["GET /idn HTTP/1.1"]  # the upstream was asked by its ASCII name

    listed = agentlog("ls", "--logs", proxy.logs)
    assert HOMOGRAPH_ASCII in listed.stdout and HOMOGRAPH not in listed.stdout
    assert "xn--pple-43d.test" in listed.stdout
    shown = json.loads(agentlog("show", request["id"], "--logs", proxy.logs).stdout)
    assert shown["domain"] == HOMOGRAPH_ASCII and shown["domain_unicode"] == HOMOGRAPH


def test_hosts_with_no_canonical_spelling_are_refused_and_recorded(proxy, decoy):
    for host in (b"xn--n3h.test", b"a..b.test", b"\xff\xfe.test", b"ok.test%00"):
        request = b"GET http://ok.test/garbage HTTP/1.1\r\nHost: " + host + b"\r\n"
        reply = send(proxy, request + CLOSE.encode())
        assert reply.startswith(b"HTTP/1.1 403"), (host, reply)
    reasons = [e["reason"] for e in blocked(proxy, 4)]
    assert all(reason.startswith("not a valid host") for reason in reasons), reasons
    assert decoy.seen == []
    assert curl(proxy, "http://ok.test/still-serving") == b"ok"


@pytest.mark.skipif(not can_make_namespaces(), reason="needs root, ip, iptables")
def test_transparent_mode_dials_and_judges_the_canonical_host_name(tmp_path, decoy):
    """A redirected agent names its destination only in the Host header: every spelling counts."""
    with AgentNamespace() as ns:
        port = free_port()
        args = ["--deny", "127.0.0.1", "--deny", "evil.test"]
        args += ["--transparent", f"{ns.host_ip}:{port}"]
        for name in [*SPELLINGS, "ok.test", "evil.test."]:
            args += ["--allow", name]
        for name in ("ok.test", "evil.test."):
            args += ["--route", f"{name}=127.0.0.2:{decoy.port}"]
        proxy = start_proxy(tmp_path / "logs", *args)
        try:
            ns.iptables(
                "-t", "nat", "PREROUTING", "-i", ns.host_if, "-p", "tcp", "--dport", "80",
                "-j", "REDIRECT", "--to-ports", str(port),
            )  # fmt: skip

            def agent_get(host: str) -> bytes:
                got = ns.run("curl", "-sS", "--max-time", "20", "-H", f"Host: {host}",
                             f"http://{ns.host_ip}/transparent", check=False)  # fmt: skip
                return got.stdout

            for spelling in SPELLINGS:
                assert b"by policy (rule 'deny 127.0.0.1')" in agent_get(spelling), spelling
            assert b"by policy (rule 'deny evil.test')" in agent_get("EVIL.test.")
            assert agent_get("OK.test.") == b"ok"  # dialled by its canonical name
            events = blocked(proxy, len(SPELLINGS) + 1)
            assert {e["domain"] for e in events} == {"127.0.0.1", "0.0.0.0", "evil.test"}
            assert decoy.seen == ["GET /transparent HTTP/1.1"]
        finally:
            assert proxy.stop() == 0
