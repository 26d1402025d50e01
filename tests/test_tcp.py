"""Raw TCP through the proxy is recorded and judged like HTTP.

Every relay, through an explicit CONNECT tunnel or redirected to the
transparent listener, is a `tcp` event written before a byte goes upstream
and one closing event: `tcp_end` (bytes and messages each way, duration, how
it ended) or `blocked`. The services are local fakes speaking neither HTTP
nor TLS (tests/fakes/tcp_echo.py).
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentlog.formats.text import summary
from agentlog.journal.reader import exchanges
from tests.conftest import BLOCKED, DOWN, assert_every_request_closed_once, free_port, proxy_args
from tests.fakes.tcp_echo import FakeTcp
from tests.harness import RunningProxy, agentlog, fill, start_proxy, verify
from tests.netns import AgentNamespace, can_make_namespaces

pytestmark = pytest.mark.timeout(90)

ECHO = "echo.test"  # echoes until the client is done, then closes
HANGUP = "hangup.test"  # answers once and hangs up first
# Not HTTP (no request line), not TLS (no handshake record): what ssh would send.
GREETING = b"SSH-2.0-agentlog_test\r\n" + bytes(range(256))


def test_a_relay_is_one_exchange_whatever_its_outcome():
    opened = {"event": "tcp", "id": "A", "domain": "h.test", "port": 22, "timestamp": "t"}
    end = {"event": "tcp_end", "id": "A", "ended": "error", "error": "\x1b[2Jboom"}
    end |= {"bytes_from_client": 3, "bytes_from_server": 0}
    [still_open] = exchanges([opened]).values()
    assert "..." in summary(still_open) and "tcp://h.test:22" in summary(still_open)
    [errored] = exchanges([opened, end, {"event": "tcp_end", "id": "B"}]).values()
    assert errored["tcp_end"] == end
    line = summary(errored)
    assert "ERROR" in line and "3 B out, 0 B in" in line and "\x1b" not in line
    blocked = {"event": "blocked", "id": "A", "reason": "not on the allowlist"}
    assert "BLOCKED" in summary(next(iter(exchanges([opened, blocked]).values())))


@pytest.fixture(scope="module")
def service() -> Iterator[FakeTcp]:
    with FakeTcp() as fake:
        yield fake


def tcp_args(service: FakeTcp) -> list[str]:
    return [
        *("--allow", ECHO, "--route", f"{ECHO}=127.0.0.1:{service.port}"),
        *("--allow", HANGUP, "--route", f"{HANGUP}=127.0.0.1:{service.hangup_port}"),
    ]


def finish(proxy: RunningProxy) -> None:
    """What every test ends with: a clean stop, an intact chain, each relay closed once."""
    assert proxy.stop() == 0
    result = verify(proxy.logs)
    assert result.returncode == 0, result.stdout
    assert_every_request_closed_once(proxy.events())


@pytest.fixture
def proxy(tmp_path, upstream, upstream_ca, service) -> Iterator[RunningProxy]:
    running = start_proxy(
        tmp_path / "logs", *proxy_args(upstream, upstream_ca[1]), *tcp_args(service)
    )
    yield running
    finish(running)


def tunnel(proxy: RunningProxy, target: str) -> tuple[socket.socket, bytes]:
    """A CONNECT to `target`; returns the socket and the proxy's answer (head and body)."""
    s = socket.create_connection((proxy.host, proxy.port), timeout=20)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = s.recv(1)  # byte by byte: nothing of the tunnel is read here
        if not byte:
            break
        head += byte
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    if length:  # a refusal's body (the connection stays open for another request)
        head += s.recv(int(length.group(1)), socket.MSG_WAITALL)
    return s, head


def read_all(s: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := s.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def exchange_through(s: socket.socket, payload: bytes) -> bytes:
    """Send `payload` while reading its echo, then close: a whole conversation.

    The client reads before it closes: mitmproxy turns a half-close inside a
    CONNECT tunnel into a full close of the upstream side."""
    sender = threading.Thread(target=s.sendall, args=(payload,))
    sender.start()
    got = bytearray()
    while len(got) < len(payload) and (chunk := s.recv(1 << 20)):
        got += chunk
    sender.join()
    s.close()
    return bytes(got)


def relays(proxy: RunningProxy, count: int = 1, closing: tuple = ("tcp_end", "blocked")):
    """The `tcp` events with their closing events, once `count` relays have closed."""
    events = proxy.wait_for(lambda es: sum(e["event"] in closing for e in es) >= count)
    opened = [e for e in events if e["event"] == "tcp"]
    closed = {e["id"]: e for e in events if e["event"] in closing}
    return [(o, closed.get(o["id"])) for o in opened]


def test_raw_bytes_through_connect_are_recorded_both_ways(proxy, service):
    s, head = tunnel(proxy, f"{ECHO}:22")
    assert head.startswith(b"HTTP/1.1 200")
    client = f"127.0.0.1:{s.getsockname()[1]}"
    assert exchange_through(s, GREETING) == GREETING

    [(opened, end)] = relays(proxy)
    assert (opened["domain"], opened["port"]) == (ECHO, 22)
    assert opened["decision"] == "allowed" and opened["mode"] == "regular"
    assert opened["client"] == client
    assert opened["agent_dst"] == f"127.0.0.1:{proxy.port}" and opened["tls"] is False
    assert end["event"] == "tcp_end" and end["seq"] > opened["seq"]
    assert end["bytes_from_client"] == end["bytes_from_server"] == len(GREETING)
    assert end["messages_from_client"] >= 1 and end["messages_from_server"] >= 1
    assert end["ended"] == "closed by client" and end["error"] is None
    assert end["upstream_dst"] == f"127.0.0.1:{service.port}"
    assert end["duration_ms"] >= 0

    logs = str(proxy.logs)
    [line] = agentlog("ls", "--logs", logs).stdout.splitlines()
    assert "TCP" in line and f"tcp://{ECHO}:22" in line and opened["id"] in line
    shown = json.loads(agentlog("show", opened["id"][:20], "--logs", logs).stdout)
    assert shown["event"] == "tcp" and shown["tcp_end"]["bytes_from_server"] == len(GREETING)


def test_connect_to_a_denied_name_is_refused_before_any_200(proxy, service):
    before = sum(service.accepted.values())
    s, answer = tunnel(proxy, f"{BLOCKED}:22")
    s.close()
    assert answer.startswith(b"HTTP/1.1 403")
    assert b"200" not in answer.split(b"\r\n", 1)[0]
    assert b"agentlog: blocked blocked.test:22" in answer and b"allowlist" in answer

    [(opened, blocked)] = relays(proxy)
    assert (opened["domain"], opened["port"], opened["decision"]) == (BLOCKED, 22, "blocked")
    assert blocked["event"] == "blocked" and blocked["reason"] == "not on the allowlist"
    assert (blocked["domain"], blocked["port"]) == (BLOCKED, 22)
    assert sum(service.accepted.values()) == before
    [line] = agentlog("ls", "--logs", str(proxy.logs)).stdout.splitlines()
    assert "BLOCKED" in line and f"tcp://{BLOCKED}:22" in line


def test_connect_to_a_denied_address_is_refused(proxy, service):
    """The echo service itself, by IP: it is running, but no rule allows 127.0.0.1."""
    before = service.accepted["echo"]
    s, answer = tunnel(proxy, f"127.0.0.1:{service.port}")
    assert answer.startswith(b"HTTP/1.1 403")
    s.close()
    [(opened, blocked)] = relays(proxy)
    assert opened["domain"] == "127.0.0.1" and blocked["event"] == "blocked"
    assert service.accepted["echo"] == before


def test_tunnel_the_client_closes_without_sending(proxy, service):
    before = service.accepted["echo"]
    s, head = tunnel(proxy, f"{ECHO}:22")
    assert head.startswith(b"HTTP/1.1 200")
    s.close()
    [(opened, end)] = relays(proxy)
    assert opened["domain"] == ECHO and opened["decision"] == "allowed"
    assert end["ended"] == "closed by client"
    assert end["bytes_from_client"] == end["bytes_from_server"] == 0
    assert end["upstream_dst"] is None
    assert service.accepted["echo"] == before  # nothing to relay, nothing dialled


def test_server_that_closes_first(proxy):
    s, head = tunnel(proxy, f"{HANGUP}:7")
    assert head.startswith(b"HTTP/1.1 200")
    s.sendall(b"\x00hello\xff")
    assert read_all(s) == b"\x00hello\xff"  # then end of stream: the server hung up
    s.close()
    [(_, end)] = relays(proxy)
    assert end["ended"] == "closed by server"
    assert end["bytes_from_client"] == end["bytes_from_server"] == 7


def test_unreachable_target_ends_in_an_error(proxy):
    s, head = tunnel(proxy, f"{DOWN}:22")  # allowed, but nothing listens there
    assert head.startswith(b"HTTP/1.1 200")  # lazy: the dial follows the first bytes
    s.sendall(GREETING)
    assert read_all(s) == b""
    s.close()
    [(opened, end)] = relays(proxy)
    assert opened["decision"] == "allowed"
    assert end["ended"] == "error" and "connect call failed" in end["error"].lower()
    assert end["bytes_from_client"] == 0  # nothing reached anyone


def test_tls_inside_a_tunnel_is_recorded_as_tls(proxy, agent_tls, service):
    """The agent speaks TLS to us, then no HTTP: a relay over TLS on both legs. The echo
    service speaks no TLS, so the upstream handshake fails and the relay ends in an error."""
    s, head = tunnel(proxy, f"{ECHO}:993")
    assert head.startswith(b"HTTP/1.1 200")
    with agent_tls.wrap_socket(s, server_hostname=ECHO) as tls:
        tls.sendall(GREETING)
        assert read_all(tls) == b""
    [(opened, end)] = relays(proxy)
    assert opened["tls"] is True and (opened["domain"], opened["port"]) == (ECHO, 993)
    assert end["ended"] == "error" and end["error"]


def proxy_rss(proxy: RunningProxy) -> int:
    status = Path(f"/proc/{proxy.proc.pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])


def test_large_transfers_are_counted_exactly_and_not_kept(proxy):
    size = 16 * 1024 * 1024
    payload = bytes(range(251)) * (size // 251) + b"!" * (size % 251)
    s, _ = tunnel(proxy, f"{ECHO}:5000")
    warm = b"SSH-2.0-warmup\r\n"  # the relay is chosen on the first bytes
    s.sendall(warm)
    assert s.recv(len(warm), socket.MSG_WAITALL) == warm
    before = proxy_rss(proxy)
    got = exchange_through(s, payload)
    grown_kib = proxy_rss(proxy) - before
    assert got == payload
    [(_, end)] = relays(proxy)
    assert end["bytes_from_client"] == end["bytes_from_server"] == size + len(warm)
    # 32 MiB went through; none of it may stay behind in the proxy.
    assert grown_kib < 12 * 1024, f"proxy grew by {grown_kib} KiB"


def test_many_tunnels_at_once(proxy):
    count = 40
    answers: dict[int, bytes] = {}

    def one(i: int) -> None:
        s, head = tunnel(proxy, f"{ECHO}:{1000 + i}")
        assert head.startswith(b"HTTP/1.1 200")
        answers[i] = exchange_through(s, b"SSH-" + str(i).encode() * (i + 1) * 100)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(answers[i] == b"SSH-" + str(i).encode() * (i + 1) * 100 for i in range(count))
    recorded = relays(proxy, count)
    assert len(recorded) == count
    for opened, end in recorded:
        i = opened["port"] - 1000
        assert end["bytes_from_client"] == end["bytes_from_server"] == len(answers[i])


def test_proxy_stopping_closes_open_relays(tmp_path, upstream, upstream_ca, service):
    proxy = start_proxy(
        tmp_path / "logs", *proxy_args(upstream, upstream_ca[1]), *tcp_args(service)
    )
    s, _ = tunnel(proxy, f"{ECHO}:22")
    s.sendall(GREETING)
    assert s.recv(len(GREETING), socket.MSG_WAITALL) == GREETING
    finish(proxy)  # with the tunnel still open
    s.close()
    [(_, end)] = relays(proxy)
    assert end["ended"] == "proxy stopped"
    assert end["bytes_from_client"] == end["bytes_from_server"] == len(GREETING)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs (needs root)")
def test_relay_that_cannot_be_recorded_is_never_dialled(
    small_disk,
    upstream,
    upstream_ca,
    service,
):
    proxy = start_proxy(small_disk, *proxy_args(upstream, upstream_ca[1]), *tcp_args(service))
    try:
        s, _ = tunnel(proxy, f"{ECHO}:22")
        assert exchange_through(s, GREETING) == GREETING
        filler = fill(small_disk)
        # The journal's last page may still have room for a line or two.
        for attempt in range(20):
            dialled = service.accepted["echo"]
            s, _ = tunnel(proxy, f"{ECHO}:{100 + attempt}")
            if exchange_through(s, GREETING) == b"":
                break
        assert service.accepted["echo"] == dialled  # refused before any connect
        proxy.wait_said("journal write failed")
        filler.unlink()
        s, _ = tunnel(proxy, f"{ECHO}:22")
        assert exchange_through(s, GREETING) == GREETING
    finally:
        proxy.stop()
    result = verify(small_disk)
    assert result.returncode == 0, result.stdout
    ports = [e["port"] for e in proxy.events("tcp")]
    assert 100 + attempt not in ports and ports[-1] == 22


# -- transparent: a redirected connection that carries no HTTP ---------------


@pytest.mark.skipif(not can_make_namespaces(), reason="needs root, ip, iptables")
def test_redirected_raw_tcp_is_recorded_under_its_original_destination(
    tmp_path, upstream, upstream_ca, service
):
    allowed, denied = 2222, 2223
    with AgentNamespace() as ns:
        port = free_port()
        proxy = start_proxy(
            tmp_path / "logs",
            *proxy_args(upstream, upstream_ca[1]),
            *("--allow", f"{ns.host_ip}:{allowed}"),
            *("--route", f"{ns.host_ip}=127.0.0.1:{service.port}"),
            *("--transparent", f"{ns.host_ip}:{port}"),
        )
        for dport in (allowed, denied):
            ns.iptables(
                *("-t", "nat", "PREROUTING", "-i", ns.host_if, "-p", "tcp"),
                *("--dport", str(dport), "-j", "REDIRECT", "--to-ports", str(port)),
            )
        before = service.accepted["echo"]
        client = (
            "import socket,sys\n"
            "s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=10)\n"
            "s.sendall(bytes.fromhex(sys.argv[3])); s.shutdown(socket.SHUT_WR)\n"
            "got=b''\n"
            "while c:=s.recv(65536): got+=c\n"
            "sys.stdout.write(got.hex())\n"
        )
        agent = ns.run("python3", "-c", client, ns.host_ip, str(allowed), GREETING.hex())
        assert bytes.fromhex(agent.stdout.decode()) == GREETING
        refused = ns.run(
            "python3", "-c", client, ns.host_ip, str(denied), GREETING.hex(), check=False
        )
        assert refused.stdout == b""
        assert service.accepted["echo"] == before + 1

        recorded = relays(proxy, 2)
        finish(proxy)
    by_port = {opened["port"]: (opened, closing) for opened, closing in recorded}
    opened, end = by_port[allowed]
    assert opened["mode"] == "transparent" and opened["domain"] == ns.host_ip
    assert opened["client"].startswith(ns.agent_ip + ":")
    assert opened["agent_dst"] == f"{ns.host_ip}:{allowed}"
    assert end["bytes_from_client"] == end["bytes_from_server"] == len(GREETING)
    assert end["upstream_dst"] == f"127.0.0.1:{service.port}"
    opened, blocked = by_port[denied]
    assert opened["decision"] == "blocked" and blocked["event"] == "blocked"
