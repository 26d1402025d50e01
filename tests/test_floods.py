"""Floods (issue 7): slowloris, a client hogging connections, idle keep-alives and HTTP/2
rapid reset, each written as the attack. The proxy keeps serving others, cuts the attacker
off, and records what it cut off in a few coalesced `connection` events."""

from __future__ import annotations

import contextlib
import resource
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import h2.events
import pytest
from websockets.sync.client import connect as ws_connect

from tests.conftest import PLAIN, UPSTREAM, assert_every_request_closed_once, proxy_args
from tests.floods import H2Tunnel, closed_by_peer, half_open, http1_get, rapid_reset
from tests.harness import RunningProxy, curl, start_proxy, verify

pytestmark = pytest.mark.timeout(120)

OTHER_CLIENT = "127.0.0.2"  # loopback too: an unrelated client, with a cap of its own


@pytest.fixture
def guarded(tmp_path, upstream, upstream_ca) -> Iterator[Callable[..., RunningProxy]]:
    """The proxy under test, with the limits a test gives it."""
    started: list[RunningProxy] = []

    def start(*limits: str) -> RunningProxy:
        proxy = start_proxy(tmp_path / "logs", *proxy_args(upstream, upstream_ca[1]), *limits)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        assert proxy.stop() == 0
        assert_every_request_closed_once(proxy.events())
        assert verify(proxy.logs).returncode == 0


def cut_off(events: list[dict], action: str) -> int:
    """How many connections (or streams) the `connection` events say were cut off so."""
    return sum(e["count"] for e in events if e["event"] == "connection" and e["action"] == action)


def served(proxy: RunningProxy, source: str = "127.0.0.1", path: str = "/hello") -> bool:
    got = curl(proxy, f"https://{UPSTREAM}{path}", "--interface", source, "--max-time", "5")
    return got.returncode == 0 and got.stdout == b"hello"


def test_slowloris_is_cut_off_at_the_header_timeout_and_others_are_served(guarded):
    """The issue's attack: more half-open connections than the proxy has descriptors.
    Before: they held every descriptor until the attacker let go, and nobody was served."""
    proxy = guarded("--header-timeout", "2", "--max-client-connections", "100")
    resource.prlimit(proxy.proc.pid, resource.RLIMIT_NOFILE, (250, 250))  # a small machine's
    started = time.monotonic()
    attackers = [half_open(proxy.port, b"GET http://plain.test/ HT") for _ in range(240)]
    attackers += [half_open(proxy.port, b"CONNECT upstream.test:443 HTTP/1.1\r\n\r\n")]  # no TLS
    attackers += [half_open(proxy.port, b"") for _ in range(59)]  # not a byte
    tricklers = attackers[:20]  # these send one more byte every half second: still cut off
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.5):
            for s in tricklers:
                with contextlib.suppress(OSError):  # closed already, as it should be
                    s.send(b"T")

    threading.Thread(target=trickle, daemon=True).start()
    try:
        assert served(proxy, source=OTHER_CLIENT)  # while the attack holds its connections
        assert all(closed_by_peer(s, within=started + 8 - time.monotonic()) for s in attackers)
    finally:
        stop.set()
        for s in attackers:
            s.close()
    events = proxy.wait_for(
        lambda es: cut_off(es, "header_timeout") + cut_off(es, "refused") == 300
    )
    assert cut_off(events, "header_timeout") >= 100  # all the cap let in, trickling or not
    assert cut_off(events, "refused") >= 1
    timeouts = [e for e in events if e["event"] == "connection"]
    assert len(timeouts) <= 12  # coalesced: one event per action a second, not 300
    timeout = next(e for e in timeouts if e["action"] == "header_timeout")
    assert timeout["client"] == "127.0.0.1" and timeout["limit"] == 2
    assert [e["path"] for e in proxy.events("request")] == ["/hello"]  # the attack made none
    assert served(proxy)  # and once cut off, the attacker's address is served again


def test_one_client_cannot_hold_more_than_its_cap(guarded):
    proxy = guarded("--max-client-connections", "5")
    held = [half_open(proxy.port, b"") for _ in range(5)]
    extra = half_open(proxy.port, b"GET http://plain.test/hello HTTP/1.1\r\n")
    assert closed_by_peer(extra, within=5)  # refused unread
    assert not served(proxy)  # the same address, past its cap
    assert served(proxy, source=OTHER_CLIENT)  # another address has a cap of its own
    held.pop().close()
    deadline = time.monotonic() + 5
    while not served(proxy) and time.monotonic() < deadline:
        time.sleep(0.1)  # the proxy counts the closed connection gone
    assert served(proxy)
    for s in held:
        s.close()
    events = proxy.wait_for(lambda es: cut_off(es, "refused") >= 2)
    refused = [e for e in events if e["event"] == "connection" and e["action"] == "refused"]
    assert refused[0]["client"] == "127.0.0.1" and refused[0]["limit"] == 5


def test_idle_keep_alive_is_closed_and_busy_ones_are_not(guarded):
    proxy = guarded("--idle-timeout", "1", "--header-timeout", "1")
    idle = half_open(proxy.port, b"")
    assert http1_get(idle, f"http://{PLAIN}/hello", PLAIN).endswith(b"\r\n\r\nhello")
    answered = time.monotonic()
    busy = half_open(proxy.port, b"")
    for _ in range(6):  # a request every 0.4 s for 2.4 s: never idle for a second
        assert http1_get(busy, f"http://{PLAIN}/hello", PLAIN).endswith(b"\r\n\r\nhello")
        time.sleep(0.4)
    busy.close()
    assert closed_by_peer(idle, within=3)
    assert time.monotonic() - answered >= 0.9
    # An exchange under way is never idle: 2.5 s between two SSE events, timeouts of 1 s.
    got = curl(proxy, f"https://{UPSTREAM}/sse?n=2&hold_ms=2500", "-N")
    assert got.returncode == 0 and got.stdout == b"data: 0\n\ndata: 1\n\n"
    # Nor is a WebSocket, however quiet: mitmproxy's own inactivity timeout covers those.
    tunnel = half_open(proxy.port, f"CONNECT {UPSTREAM}:443 HTTP/1.1\r\n\r\n".encode())
    assert tunnel.recv(4096).startswith(b"HTTP/1.1 200")
    tls = ssl.create_default_context(cafile=str(proxy.ca))
    with ws_connect(f"wss://{UPSTREAM}/ws", sock=tunnel, ssl=tls, open_timeout=10) as ws:
        time.sleep(2.5)
        ws.send("still here")
        assert ws.recv(timeout=10) == "still here"
    events = proxy.wait_for(lambda es: cut_off(es, "idle_timeout") >= 1)
    assert cut_off(events, "header_timeout") == 0


def test_rapid_reset_writes_a_bounded_summary_and_forwards_nothing(guarded, upstream):
    """The issue's attack: 4,000 HTTP/2 streams opened and reset at once. Before: two journal
    lines per stream (6.5 MB), and mitmproxy forwarded most of the requests all the same."""
    proxy = guarded()
    journal = proxy.logs / "requests.jsonl"
    before = journal.stat().st_size
    attack: dict[str, int] = {}
    attacker = threading.Thread(
        target=lambda: attack.update(
            rapid_reset(proxy.port, proxy.ca, UPSTREAM, "/rapid-reset", 4000)
        ),
        daemon=True,
    )
    attacker.start()
    assert served(proxy, source=OTHER_CLIENT)  # served while the streams fly
    attacker.join(90)
    assert attack["streams"] == 4000
    events = proxy.wait_for(lambda es: cut_off(es, "reset_flood") >= 1, timeout=15)
    time.sleep(1.5)  # the last counts go out within a second
    events = proxy.events()
    assert upstream.hits["/rapid-reset"] == 0  # nothing of it went upstream
    # A stream whose HEADERS and RST_STREAM a TCP segment boundary split into two reads
    # is an ordinary request, written ahead and then closed by its error: a handful at
    # most, never one per stream.
    recorded = [e for e in events if e["event"] == "request" and e["path"] == "/rapid-reset"]
    assert len(recorded) <= 40, f"{len(recorded)} of 4000 reset streams recorded one by one"
    closed = {e["id"] for e in events if e["event"] == "error"}
    assert all(e["id"] in closed for e in recorded)
    growth = journal.stat().st_size - before
    assert growth < 20_000, f"{growth} bytes for {attack}"  # was ~1,600 bytes a stream
    reset = [e for e in events if e["event"] == "connection" and e["action"] == "streams_reset"]
    assert reset and reset[0]["client"] == "127.0.0.1" and reset[0]["count"] > 0
    assert cut_off(events, "reset_flood") >= 2  # connections closed, reconnected, closed again
    assert served(proxy)


def test_a_stream_reset_after_it_was_forwarded_keeps_its_events(guarded, upstream):
    proxy = guarded()
    tunnel = H2Tunnel(proxy.port, proxy.ca, UPSTREAM)
    for _ in range(50):  # a client cancelling now and then is not a flood
        tunnel.reset(tunnel.headers("/cancelled"))
    tunnel.flush()
    forwarded = tunnel.headers("/sse?n=2&hold_ms=10000")
    tunnel.flush()
    tunnel.wait_for(h2.events.ResponseReceived, forwarded)  # it reached the upstream
    tunnel.reset(forwarded)
    tunnel.flush()
    assert tunnel.get("/hello") == (200, b"hello")  # the same connection still serves
    tunnel.close()
    events = proxy.wait_for(lambda es: any(e["event"] == "error" for e in es))
    request, error = proxy.exchange("/sse")
    assert request["event"] == "request" and error["event"] == "error"
    assert "reset" in error["error"]
    assert upstream.hits["/cancelled"] == 0
    proxy.wait_for(lambda es: cut_off(es, "streams_reset") == 50)
    assert not any(e.get("path") == "/cancelled" for e in events)


def test_a_reset_that_comes_with_the_end_of_a_body_reaches_its_stream(guarded, upstream):
    """mitmproxy forgets a stream at its END_STREAM when h2 already reports it closed, so a
    RST_STREAM in the same read was dropped and the request completed upstream as if sent."""
    proxy = guarded()
    tunnel = H2Tunnel(proxy.port, proxy.ca, UPSTREAM)
    stream_id = tunnel.headers("/echo?half", end_stream=False, method="POST")
    tunnel.conn.send_data(stream_id, b"first half, ")
    tunnel.flush()
    proxy.wait_for(lambda es: any(e.get("path") == "/echo?half" for e in es))  # it streams
    time.sleep(0.2)
    tunnel.conn.send_data(stream_id, b"never mind", end_stream=True)
    tunnel.reset(stream_id)
    tunnel.flush()  # the body's end and the reset, in one write
    assert tunnel.get("/hello") == (200, b"hello")
    tunnel.close()
    proxy.wait_for(lambda es: sum(e["event"] in ("error", "response") for e in es) == 2)
    request, outcome = proxy.exchange("/echo?half")
    assert outcome["event"] == "error" and "reset" in outcome["error"]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def pump(s, head: bytes, megabytes: int) -> bytes:
    """Send `head`, then `megabytes` of 'a' as the proxy takes them; what came back."""
    s.sendall(head)
    chunk = b"a" * 65536
    with contextlib.suppress(OSError):  # the proxy hangs up on us: that is the point
        for _ in range(megabytes * 16):
            s.sendall(chunk)
    s.settimeout(5)
    reply = b""
    with contextlib.suppress(OSError):
        while data := s.recv(65536):
            reply += data
    return reply


def test_a_request_head_that_never_ends_is_refused_at_the_size_limit(guarded):
    """Before: mitmproxy buffered a head without end, however long (5.7 GB in 10 s here)."""
    proxy = guarded("--max-header-size", "256k")
    before = rss_mb(proxy.proc.pid)
    endless = half_open(proxy.port, b"")
    reply = pump(endless, b"GET http://plain.test/ HTTP/1.1\r\nX-Endless: ", 200)
    assert reply.startswith(b"HTTP/1.1 431") and b"agentlog" in reply
    assert rss_mb(proxy.proc.pid) - before < 50
    # Nor may a client pile data up behind a request that is being answered.
    behind = half_open(proxy.port, b"")
    slow = f"GET http://{PLAIN}/sse?n=2&hold_ms=3000 HTTP/1.1\r\nHost: {PLAIN}\r\n\r\n"
    pump(behind, slow.encode(), 200)
    assert rss_mb(proxy.proc.pid) - before < 50
    assert served(proxy)
    events = proxy.wait_for(
        lambda es: cut_off(es, "header_too_large") == 2 and any(e["event"] == "error" for e in es)
    )
    assert [e["path"] for e in proxy.events("request")] == ["/sse?n=2&hold_ms=3000", "/hello"]
    request, error = proxy.exchange("/sse")  # the request answered while data piled up
    assert error["event"] == "error" and "ahead of its response" in error["error"]
    refused = next(e for e in events if e.get("action") == "header_too_large")
    assert refused["limit"] == 256 * 1024
