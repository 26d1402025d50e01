"""The recording proxy end to end: real curl and httpx, through the real proxy, to the fake.

Every test checks what a user would: the client got the right answer, and
the journal holds exactly one request event for it, followed by its outcome.
"""

from __future__ import annotations

import json
import re
import socket

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.conftest import BLOCKED, DOWN, PLAIN, RESET, UPSTREAM, prefer_h2_context
from tests.harness import agentlog, closed, curl, verify

pytestmark = pytest.mark.timeout(60)
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def assert_request_event(event: dict, method: str, domain: str, path: str) -> None:
    assert event["event"] == "request"
    assert re.fullmatch(r"[0-9A-Z]{26}", event["id"])
    assert RFC3339_UTC.match(event["timestamp"])
    assert (event["method"], event["domain"], event["path"]) == (method, domain, path)
    assert isinstance(event["headers"], dict) and event["headers"]
    assert "pcap_file" in event and event["pcap_file"] is None


@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_curl_get_and_post(proxy, upstream, version):
    got = curl(proxy, f"https://{UPSTREAM}/hello", version, "-H", "X-Trace: t1")
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"hello"
    posted = curl(proxy, f"https://{UPSTREAM}/echo?k=v", version, "-d", "payload=42")
    assert posted.returncode == 0, posted.stderr
    echo = json.loads(posted.stdout)
    assert echo["method"] == "POST" and echo["body"] == "payload=42"

    events = proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) == 2)
    wire = "HTTP/2.0" if version == "--http2" else "HTTP/1.1"
    get, get_resp = proxy.exchange("/hello")
    assert_request_event(get, "GET", UPSTREAM, "/hello")
    assert get["http_version"] == wire and get["headers"]["x-trace"] == "t1"
    assert get["scheme"] == "https" and get["port"] == 443 and get["mode"] == "regular"
    assert get_resp["event"] == "response" and get_resp["status"] == 200
    assert get_resp["seq"] > get["seq"]
    post, post_resp = proxy.exchange("/echo")
    assert_request_event(post, "POST", UPSTREAM, "/echo?k=v")
    assert post["request_bytes"] == len("payload=42")
    assert (proxy.logs / post["request_body"]).read_bytes() == b"payload=42"
    assert post_resp["status"] == 200
    assert json.loads((proxy.logs / post_resp["response_body"]).read_bytes())["body_len"] == 10
    assert len(events) >= 5  # start event + 2 x (request, response)


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
def test_httpx_get_and_post(proxy, agent_tls, http2):
    tls = prefer_h2_context(proxy.ca) if http2 else agent_tls
    with httpx.Client(proxy=proxy.url, verify=tls, http2=http2, timeout=20) as client:
        assert client.get(f"https://{UPSTREAM}/hello").text == "hello"
        reply = client.post(f"https://{UPSTREAM}/echo", json={"q": "why"})
        assert reply.json()["body"] == '{"q":"why"}'
        assert reply.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) == 2)
    for path, method in (("/hello", "GET"), ("/echo", "POST")):
        request, response = proxy.exchange(path)
        assert_request_event(request, method, UPSTREAM, path)
        assert request["http_version"] == ("HTTP/2.0" if http2 else "HTTP/1.1")
        assert response["event"] == "response" and response["status"] == 200


def test_plain_http_is_recorded_too(proxy):
    got = curl(proxy, f"http://{PLAIN}/echo", "-H", "Authorization: Basic c2VjcmV0")
    assert json.loads(got.stdout)["headers"]["authorization"] == "Basic c2VjcmV0"
    proxy.wait_for(closed("response"))
    request, response = proxy.exchange("/echo")
    assert request["scheme"] == "http" and request["port"] == 80
    assert request["headers"]["authorization"] == "[REDACTED]"
    assert b"c2VjcmV0" not in (proxy.logs / response["response_body"]).read_bytes()


def test_ip_literal_not_on_allowlist_is_never_dialled(proxy, upstream):
    before = sum(upstream.hits.values())
    got = curl(proxy, f"http://127.0.0.1:{upstream.plain_port}/hello")
    assert b"agentlog" in got.stdout
    proxy.wait_for(closed("blocked"))
    assert sum(upstream.hits.values()) == before


def test_websocket_echo_is_counted(proxy, agent_tls):
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    raw.sendall(f"CONNECT {UPSTREAM}:443 HTTP/1.1\r\nHost: {UPSTREAM}:443\r\n\r\n".encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    with ws_connect(
        f"wss://{UPSTREAM}/ws", sock=raw, ssl=agent_tls, server_hostname=UPSTREAM, open_timeout=10
    ) as ws:
        for i in range(5):
            ws.send(f"message {i}")
            assert ws.recv(timeout=10) == f"message {i}"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=10) == b"\x00\x01binary"
    proxy.wait_for(closed("websocket"))
    request, response, counted = proxy.exchange("/ws")
    assert request["method"] == "GET" and response["status"] == 101
    assert counted["event"] == "websocket"
    assert counted["messages_from_client"] == 6 and counted["messages_from_server"] == 6
    assert counted["bytes_from_client"] == 5 * len("message 0") + 8


def test_sse_first_event_arrives_while_upstream_holds_the_rest(proxy, upstream, agent_tls):
    upstream.arm_sse()
    try:
        with (
            httpx.Client(proxy=proxy.url, verify=agent_tls, timeout=15) as client,
            client.stream("GET", f"https://{UPSTREAM}/sse?n=4") as reply,
        ):
            lines = reply.iter_lines()
            assert next(lines) == "data: 0"
            # The upstream is still holding events 1..3: what we read came streamed.
            assert upstream.sse_first_sent.is_set()
            upstream.release_sse()
            rest = [line for line in lines if line]
    finally:
        upstream.release_sse()
    assert rest == ["data: 1", "data: 2", "data: 3"]
    proxy.wait_for(closed("response"))
    request, response = proxy.exchange("/sse")
    assert response["headers"]["content-type"].startswith("text/event-stream")
    body = (proxy.logs / response["response_body"]).read_bytes()
    assert body.count(b"data: ") == 4


def test_10_mib_download_streams_and_body_is_capped(proxy):
    size = 10 * 1024 * 1024
    got = curl(
        proxy, f"https://{UPSTREAM}/bytes?n={size}", "-o", "/dev/null", "-w", "%{size_download}"
    )
    assert got.returncode == 0, got.stderr
    assert int(got.stdout) == size
    proxy.wait_for(closed("response"))
    _, response = proxy.exchange("/bytes")
    assert response["response_bytes"] == size
    assert response["response_body_truncated"] is True
    assert (proxy.logs / response["response_body"]).stat().st_size == 1024 * 1024


def test_upstream_down_gives_502_and_error_event(proxy):
    got = curl(proxy, f"https://{DOWN}/hello", "-w", "%{http_code}", "-o", "/dev/null")
    assert got.stdout == b"502"
    proxy.wait_for(closed("error"))
    request, error = proxy.exchange("/hello", domain=DOWN)
    assert error["event"] == "error" and error["stage"] == "request"
    assert "refused" in error["error"].lower() or "connect" in error["error"].lower()


def test_upstream_reset_mid_stream_gives_error_event(proxy):
    got = curl(proxy, f"https://{RESET}/reset", "-o", "/dev/null")
    assert got.returncode != 0  # the client sees the transfer cut short
    proxy.wait_for(closed("error"))
    request, *rest = proxy.exchange("/reset", domain=RESET)
    error = rest[-1]
    assert error["event"] == "error" and error["stage"] == "response"
    assert error["response_bytes"] > 0


def test_client_rejecting_our_ca_gives_tls_failed_event(proxy):
    got = curl(proxy, f"https://{UPSTREAM}/pinned", trust_ca=False)
    assert got.returncode == 60  # curl: peer certificate cannot be authenticated
    events = proxy.wait_for(closed("tls_failed"))
    failed = [e for e in events if e["event"] == "tls_failed"]
    assert len(failed) == 1 and failed[0]["domain"] == UPSTREAM
    assert not [e for e in events if e["event"] == "request"]


def test_blocked_host_gets_403_naming_agentlog_and_rule(proxy, upstream):
    before = sum(upstream.hits.values())
    got = curl(proxy, f"http://{BLOCKED}/steal?data=1", "-w", "\n%{http_code}")
    body, _, status = got.stdout.rpartition(b"\n")
    assert status == b"403"
    assert b"agentlog" in body and b"allowlist" in body
    proxy.wait_for(closed("blocked"))
    request, blocked = proxy.exchange("/steal", domain=BLOCKED)
    assert request["decision"] == "blocked"
    assert blocked["event"] == "blocked" and blocked["reason"] == "not on the allowlist"
    # HTTPS is refused at its CONNECT, before any 200: no tunnel, no request to record.
    got = curl(proxy, f"https://{BLOCKED}/steal?data=2")
    assert b"CONNECT tunnel failed, response 403" in got.stderr
    proxy.wait_for(lambda es: sum(e["event"] == "blocked" for e in es) == 2)
    [tunnel] = proxy.events("tcp")
    assert (tunnel["domain"], tunnel["port"], tunnel["decision"]) == (BLOCKED, 443, "blocked")
    assert sum(upstream.hits.values()) == before


def test_deny_rule_is_named(tmp_path, upstream, upstream_ca):
    from tests.conftest import proxy_args
    from tests.harness import start_proxy

    proxy = start_proxy(
        tmp_path / "logs", *proxy_args(upstream, upstream_ca[1]), "--deny", "api.fake.test:443"
    )
    try:
        got = curl(proxy, "https://api.fake.test/hello")
        assert b"CONNECT tunnel failed, response 403" in got.stderr
        proxy.wait_for(closed("blocked"))
        [blocked] = proxy.events("blocked")
        assert blocked["rule"] == "deny api.fake.test:443"
    finally:
        proxy.stop()


def test_host_header_naming_a_blocked_host_is_refused_inside_an_allowed_tunnel(proxy, upstream):
    before = upstream.hits["/smuggle"]
    got = curl(proxy, f"https://{UPSTREAM}/smuggle", "--http1.1", "-H", f"Host: {BLOCKED}")
    assert b"agentlog: blocked blocked.test" in got.stdout
    assert upstream.hits["/smuggle"] == before


def test_routed_host_is_logged_under_its_own_name(proxy, upstream):
    got = curl(proxy, f"https://{UPSTREAM}/echo")
    echo = json.loads(got.stdout)
    assert echo["headers"]["host"] == UPSTREAM  # the upstream saw the name, not the route
    proxy.wait_for(closed("response"))
    request, _ = proxy.exchange("/echo")
    assert request["domain"] == UPSTREAM and request["port"] == 443


def test_redirected_names_keep_connections_alive(proxy, agent_tls, upstream):
    with httpx.Client(proxy=proxy.url, verify=agent_tls, timeout=20) as client:
        for _ in range(3):
            assert client.get(f"https://{UPSTREAM}/hello").status_code == 200
    assert proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) == 3)
    ports = {e["client"] for e in proxy.events("request")}
    assert len(ports) == 1  # one client connection, kept alive across requests
    upstream_legs = {e["upstream_src"] for e in proxy.events("response")}
    assert len(upstream_legs) == 1  # and one routed upstream connection, reused


def test_agent_gets_only_the_ca_certificate(proxy):
    ca_text = proxy.ca.read_text()
    assert "BEGIN CERTIFICATE" in ca_text and "PRIVATE KEY" not in ca_text
    assert oct((proxy.logs / "ca.key").stat().st_mode & 0o777) == "0o600"
    assert oct(proxy.ca.stat().st_mode & 0o777) == "0o644"
    assert oct((proxy.logs / "keys.log").stat().st_mode & 0o777) == "0o600"
    confdir = proxy.logs / ".mitmproxy"
    assert oct(confdir.stat().st_mode & 0o777) == "0o700"


def test_journal_chain_verifies_after_traffic(proxy):
    for _ in range(3):
        curl(proxy, f"https://{UPSTREAM}/hello")
    proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) == 3)
    assert proxy.stop() == 0
    result = verify(proxy.logs)
    assert result.returncode == 0, result.stdout
    assert proxy.events()[-1]["action"] == "stop"


def test_fingerprint_tags_the_same_secret_alike(tmp_path, upstream, upstream_ca):
    from tests.conftest import proxy_args
    from tests.harness import start_proxy

    proxy = start_proxy(tmp_path / "logs", *proxy_args(upstream, upstream_ca[1]), "--fingerprint")
    try:
        for key in ("key-number-one", "key-number-one", "key-number-two"):
            curl(proxy, f"https://{UPSTREAM}/hello", "-H", f"X-Api-Key: {key}")
        proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) == 3)
    finally:
        proxy.stop()
    tags = [e["headers"]["x-api-key"] for e in proxy.events("request")]
    assert all(re.fullmatch(r"\[REDACTED:[0-9a-f]{12}\]", tag) for tag in tags)
    assert tags[0] == tags[1] != tags[2]
    assert b"key-number" not in (proxy.logs / "requests.jsonl").read_bytes()


def test_ipv6_listener(tmp_path, upstream, upstream_ca):
    from tests.conftest import proxy_args
    from tests.harness import start_proxy

    proxy = start_proxy(tmp_path / "logs", *proxy_args(upstream, upstream_ca[1]), listen="[::1]:0")
    try:
        assert proxy.url.startswith("http://[::1]:")
        assert curl(proxy, f"https://{UPSTREAM}/hello").stdout == b"hello"
        proxy.wait_for(closed("response"))
        request, _ = proxy.exchange("/hello")
        assert request["client"].startswith("[::1]:")
    finally:
        proxy.stop()


@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_large_upload_streams_and_is_accounted_for(proxy, tmp_path, version):
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"u" * (3 * 1024 * 1024))
    got = curl(proxy, f"https://{UPSTREAM}/echo?up=1", version, "--data-binary", f"@{upload}")
    assert json.loads(got.stdout)["body_len"] == 3 * 1024 * 1024  # all of it went through
    chunked = curl(
        proxy,
        f"https://{UPSTREAM}/echo?up=2",
        "--http1.1",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        "small chunked body",
    )
    assert json.loads(chunked.stdout)["body"] == "small chunked body"
    proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) == 2)

    request, response = proxy.exchange("/echo?up=1")
    assert request["request_bytes"] is None  # written ahead, before the body was seen
    assert response["request_bytes"] == 3 * 1024 * 1024
    assert response["request_body_truncated"] is True
    assert (proxy.logs / response["request_body"]).stat().st_size == 1024 * 1024
    merged = json.loads(agentlog("show", request["id"], "--logs", proxy.logs).stdout)
    assert merged["request_bytes"] == 3 * 1024 * 1024  # show lifts it into the request
    _, chunked_response = proxy.exchange("/echo?up=2")
    assert chunked_response["request_bytes"] == len("small chunked body")
    assert chunked_response["request_body_truncated"] is False


def test_compressed_bodies_are_stored_decoded_and_redacted(proxy, tmp_path):
    import gzip

    secret = "sk-ant-api03-" + "Q" * 40
    packed = tmp_path / "body.gz"
    packed.write_bytes(gzip.compress(json.dumps({"note": f"key {secret}"}).encode()))
    got = curl(
        proxy,
        f"https://{UPSTREAM}/echo?gz=1",
        "-H",
        "Content-Encoding: gzip",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        f"@{packed}",
    )
    assert json.loads(got.stdout)["body_len"] == packed.stat().st_size
    proxy.wait_for(closed("response"))
    request, _ = proxy.exchange("/echo?gz=1")
    stored = (proxy.logs / request["request_body"]).read_bytes()
    assert json.loads(stored) == {"note": "key [REDACTED]"}


def test_http2_body_without_length_streams_whatever_the_method(proxy, tmp_path):
    upload = tmp_path / "body.bin"
    upload.write_bytes(b"g" * (2 * 1024 * 1024))
    got = curl(
        proxy,
        f"https://{UPSTREAM}/echo?h2get=1",
        "--http2",
        "-X",
        "GET",
        "-H",
        "Content-Length:",
        "--data-binary",
        f"@{upload}",
    )
    assert json.loads(got.stdout)["body_len"] == 2 * 1024 * 1024
    assert curl(proxy, f"https://{UPSTREAM}/hello?h2get=2", "--http2").stdout == b"hello"
    proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) == 2)
    request, response = proxy.exchange("/echo?h2get=1")
    assert "content-length" not in request["headers"] and request["http_version"] == "HTTP/2.0"
    assert request["request_bytes"] is None and response["request_bytes"] == 2 * 1024 * 1024
    _, empty = proxy.exchange("/hello?h2get=2")
    assert empty["request_bytes"] == 0 and empty["request_body"] is None
