"""Checks of the test fakes themselves: real clients straight against FakeUpstream."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from tests.fakes.app import byte_pattern
from tests.fakes.certs import CA, issue_leaf, make_ca
from tests.fakes.reset import SENT_BYTES
from tests.fakes.upstream import FakeUpstream

pytestmark = pytest.mark.timeout(30)
REPO = Path(__file__).resolve().parent.parent
CURL_PARTIAL_FILE, CURL_RECV_ERROR, CURL_BAD_PEER_CERT = 18, 56, 60


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fakes")


@pytest.fixture(scope="module")
def ca(workdir: Path) -> CA:
    return make_ca("agentlog test CA")


@pytest.fixture(scope="module")
def ca_file(ca: CA, workdir: Path) -> Path:
    return ca.write(workdir)


@pytest.fixture(scope="module")
def upstream(ca: CA, workdir: Path) -> Iterator[FakeUpstream]:
    with FakeUpstream.from_ca(ca, workdir) as server:
        yield server


@pytest.fixture
def client_tls(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def curl(
    *args: str, ca_file: Path | None = None, port: int | None = None
) -> subprocess.CompletedProcess[str]:
    """curl with the CA trusted and upstream.test:port resolved to 127.0.0.1."""
    options = ["--silent", "--show-error", "--max-time", "10"]
    if ca_file is not None:
        options += ["--cacert", str(ca_file)]
    if port is not None:
        options += ["--resolve", f"upstream.test:{port}:127.0.0.1"]
    return subprocess.run(
        ["curl", *options, *args], check=False, capture_output=True, text=True, timeout=20
    )


@pytest.mark.parametrize(("flag", "version"), [("--http1.1", "1.1"), ("--http2", "2")])
def test_curl_hello_over_tls(
    upstream: FakeUpstream, ca_file: Path, flag: str, version: str
) -> None:
    result = curl(
        flag, "-w", "\n%{http_version}", upstream.url("/hello"), ca_file=ca_file, port=upstream.port
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"hello\n{version}"


def test_httpx_http2_echo(upstream: FakeUpstream, client_tls: ssl.SSLContext) -> None:
    with httpx.Client(http2=True, verify=client_tls, timeout=5) as client:
        response = client.post(
            upstream.url("/echo?a=1&b=2", host="127.0.0.1"),
            content="héllo",
            headers={"X-Test": "yes"},
        )
    assert response.http_version == "HTTP/2"
    echo = response.json()
    assert echo["method"] == "POST"
    assert echo["path"] == "/echo?a=1&b=2"
    assert echo["http_version"] == "2"
    assert echo["scheme"] == "https"
    assert echo["body"] == "héllo"
    assert echo["body_len"] == len("héllo".encode())
    assert echo["headers"]["x-test"] == "yes"
    assert echo["headers"]["host"] == f"127.0.0.1:{upstream.port}"


def test_plain_port_echo_and_status(upstream: FakeUpstream) -> None:
    with httpx.Client(timeout=5) as client:
        echo = client.get(upstream.url("/echo", host="127.0.0.1", tls=False)).json()
        teapot = client.get(upstream.url("/status/418", host="127.0.0.1", tls=False))
        no_content = client.get(upstream.url("/status/204", host="127.0.0.1", tls=False))
    assert (echo["http_version"], echo["scheme"]) == ("1.1", "http")
    assert (teapot.status_code, teapot.text) == (418, "status 418\n")
    assert (no_content.status_code, no_content.content) == (204, b"")


def test_hits_count_per_path(upstream: FakeUpstream) -> None:
    before = upstream.hits["/status/503"]
    response = httpx.get(
        upstream.url("/status/503?ignored=1", host="127.0.0.1", tls=False), timeout=5
    )
    assert response.status_code == 503
    assert upstream.hits["/status/503"] == before + 1
    assert upstream.hits["/never-requested"] == 0


def test_sse_event_zero_arrives_while_rest_is_held(
    upstream: FakeUpstream, client_tls: ssl.SSLContext
) -> None:
    upstream.arm_sse()
    with (
        httpx.Client(verify=client_tls, timeout=5) as client,
        client.stream("GET", upstream.url("/sse?n=4", host="127.0.0.1")) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == "data: 0"  # received although the server is still holding 1..3
        assert upstream.sse_first_sent.is_set()
        upstream.release_sse()
        rest = [line for line in lines if line]
    assert rest == ["data: 1", "data: 2", "data: 3"]


def test_bytes_10_mib(upstream: FakeUpstream, ca_file: Path, workdir: Path) -> None:
    size = 10 * 1024 * 1024
    out = workdir / "bytes.bin"
    result = curl(
        "-o", str(out), upstream.url(f"/bytes?n={size}"), ca_file=ca_file, port=upstream.port
    )
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size == size
    assert out.read_bytes() == byte_pattern(size)


@pytest.mark.parametrize("tls", [True, False])
def test_reset_aborts_transfer(upstream: FakeUpstream, ca_file: Path, tls: bool) -> None:
    port = upstream.reset_port if tls else upstream.reset_plain_port
    before = upstream.hits["/reset"]
    scheme = "https" if tls else "http"
    result = curl(
        "-o",
        os.devnull,
        "-w",
        "%{size_download}",
        f"{scheme}://upstream.test:{port}/reset",
        ca_file=ca_file,
        port=port,
    )
    assert result.returncode in (CURL_PARTIAL_FILE, CURL_RECV_ERROR), result.stderr
    assert 0 < int(result.stdout) <= SENT_BYTES
    assert upstream.hits["/reset"] == before + 1


def test_websocket_echo(upstream: FakeUpstream, client_tls: ssl.SSLContext) -> None:
    uri = f"wss://127.0.0.1:{upstream.port}/ws"
    with ws_connect(uri, ssl=client_tls, server_hostname="upstream.test", open_timeout=30) as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "ping"
        ws.send(b"\x00\x01\xff")
        assert ws.recv(timeout=5) == b"\x00\x01\xff"


def test_leaf_from_untrusted_ca_is_rejected(ca_file: Path, tmp_path: Path) -> None:
    with FakeUpstream.from_ca(make_ca("untrusted CA"), tmp_path) as rogue:
        result = curl(rogue.url("/hello"), ca_file=ca_file, port=rogue.port)
    assert result.returncode == CURL_BAD_PEER_CERT, result.stderr
    assert rogue.hits["/hello"] == 0


def test_standalone_process(ca: CA, ca_file: Path, tmp_path: Path) -> None:
    cert, key = issue_leaf(ca, ["upstream.test"]).write(tmp_path, "standalone")
    command = [
        sys.executable,
        "-m",
        "tests.fakes.upstream",
        "--cert",
        str(cert),
        "--key",
        str(key),
        "--port",
        "0",
    ]
    with subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            port = json.loads(process.stdout.readline())["port"]
            hello = curl(f"https://upstream.test:{port}/hello", ca_file=ca_file, port=port)
            sse = curl(
                f"https://upstream.test:{port}/sse?n=3&hold_ms=20", ca_file=ca_file, port=port
            )
            ungated = curl(f"https://upstream.test:{port}/sse?n=2", ca_file=ca_file, port=port)
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
    assert hello.stdout == "hello"
    assert sse.stdout == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert ungated.stdout == "data: 0\n\ndata: 1\n\n"


def test_stop_drops_open_connections(ca: CA, ca_file: Path, tmp_path: Path) -> None:
    """stop() must not wait for clients (hypercorn would, for TLS close_notify and WebSockets)."""
    tls = ssl.create_default_context(cafile=str(ca_file))
    server = FakeUpstream.from_ca(ca, tmp_path).start()
    with (
        httpx.Client(verify=tls, http2=True, timeout=5) as h2_client,
        httpx.Client(verify=tls, timeout=5) as h1_client,
        ws_connect(
            f"wss://127.0.0.1:{server.port}/ws", ssl=tls, server_hostname="upstream.test"
        ) as ws,
    ):
        assert h2_client.get(server.url("/hello", host="127.0.0.1")).text == "hello"
        assert h1_client.get(server.url("/hello", host="127.0.0.1")).text == "hello"
        server.stop()  # raises if the server thread is still alive after 10 s
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
