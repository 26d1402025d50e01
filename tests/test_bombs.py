"""Decompression bombs and undecodable bodies, through the real proxy.

A bomb (a few hundred bytes that decode to hundreds of MiB) in a request or a
response is stored as at most the cap of decoded bytes, marked truncated,
without the proxy's memory growing and without holding up other requests. A
body that cannot be decoded is not stored at all: no raw compressed bytes (the
redactor cannot see into them) and no bytes of an unknown coding reach disk.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import json
import os
import signal
import ssl
import time
import zlib
from pathlib import Path

import brotli
import httpx
import pytest

from tests.conftest import UPSTREAM, assert_every_request_closed_once, proxy_args
from tests.fakes.app import bomb
from tests.harness import RunningProxy, start_proxy, verify
from tests.test_proxy_http import curl

pytestmark = pytest.mark.timeout(180)
CAP = 256 * 1024
CODINGS = ["br", "gzip", "deflate", "zstd"]
SECRET = "sk-ant-api03-" + "Q" * 40


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, upstream, upstream_ca):
    logs = tmp_path_factory.mktemp("bombs") / "logs"
    running = start_proxy(logs, *proxy_args(upstream, upstream_ca[1]), "--body-cap", "256K")
    yield running
    assert running.stop() == 0
    assert_every_request_closed_once(running.events())
    assert verify(logs).returncode == 0


@pytest.fixture(scope="module")
def client(proxy):
    tls = ssl.create_default_context(cafile=str(proxy.ca))
    with httpx.Client(proxy=proxy.url, verify=tls, timeout=30) as c:
        yield c


def post(client: httpx.Client, path: str, body: bytes, coding: str) -> httpx.Response:
    headers = {"content-encoding": coding, "content-type": "text/plain"}
    return client.post(f"https://{UPSTREAM}{path}", content=body, headers=headers)


def exchange(proxy: RunningProxy, path: str) -> tuple[dict, dict]:
    """The request event and its closing event, once the closing event is written."""
    proxy.wait_for(
        lambda es: any(
            e["event"] in ("response", "error")
            and e["id"] in {r["id"] for r in es if r.get("path") == path}
            for e in es
        )
    )
    events = proxy.exchange(path)
    return events[0], events[-1]


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kib) / 1024


def files_holding(logs: Path, needle: bytes) -> list[Path]:
    return [p for p in logs.rglob("*") if p.is_file() and needle in p.read_bytes()]


# -- bombs -------------------------------------------------------------------


@pytest.mark.parametrize("coding", CODINGS)
def test_a_bomb_request_body_is_stored_capped(proxy, client, coding):
    wire = bomb(coding, 200)
    assert len(wire) <= CAP  # held whole, its event written ahead with the body
    reply = post(client, f"/echo?bomb={coding}", wire, coding)
    assert reply.status_code == 200 and reply.json()["body_len"] == len(wire)
    request, _ = exchange(proxy, f"/echo?bomb={coding}")
    assert request["request_bytes"] == len(wire)
    assert request["request_body_truncated"] is True
    assert (proxy.logs / request["request_body"]).read_bytes() == bytes(CAP)


@pytest.mark.parametrize("coding", CODINGS)
def test_a_bomb_response_body_is_stored_capped(proxy, coding):
    got = curl(proxy, f"https://{UPSTREAM}/bomb?coding={coding}&mib=200", "-o", "/dev/null")
    assert got.returncode == 0, got.stderr
    _, response = exchange(proxy, f"/bomb?coding={coding}&mib=200")
    assert response["response_bytes"] == len(bomb(coding, 200))
    assert response["response_body_truncated"] is True
    assert (proxy.logs / response["response_body"]).read_bytes() == bytes(CAP)


def test_many_bombs_at_once_leave_memory_and_other_requests_alone(proxy, client):
    """32 bombs of 300 MiB each, both ways, while unrelated requests go through."""
    jobs = []
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for i in range(4):
            for coding in CODINGS:
                url = f"https://{UPSTREAM}/bomb?coding={coding}&mib=300&n={i}"
                jobs.append(pool.submit(curl, proxy, url, "-o", "/dev/null"))
                wire = bomb(coding, 300)
                jobs.append(pool.submit(post, client, f"/echo?many={coding}{i}", wire, coding))
        latencies = []
        for i in range(10):
            start = time.monotonic()
            assert client.get(f"https://{UPSTREAM}/hello?during={i}").text == "hello"
            reply = client.post(f"https://{UPSTREAM}/echo?during={i}", json={"n": i})
            assert reply.json()["body_len"] > 0
            latencies.append(time.monotonic() - start)
        for job in jobs:
            job.result()
    assert max(latencies) < 2.0, latencies
    assert peak_rss_mib(proxy.proc.pid) < 250
    proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) >= len(jobs) + 20)
    for event in proxy.events():
        for name in ("request_body", "response_body"):
            if event.get(name):
                assert (proxy.logs / event[name]).stat().st_size <= CAP


def test_a_killed_body_worker_costs_one_body_at_most(proxy, client):
    workers = [
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit() and _is_body_worker_of(int(pid), proxy.proc.pid)
    ]
    assert workers, "no body worker processes"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    reply = post(client, "/echo?after-kill=1", bomb("br", 10), "br")
    assert reply.status_code == 200
    request, _ = exchange(proxy, "/echo?after-kill=1")
    assert (proxy.logs / request["request_body"]).read_bytes() == bytes(CAP)


def _is_body_worker_of(pid: int, parent: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    ppid = int(stat.rpartition(")")[2].split()[1])
    return ppid == parent and b"agentlog.journal.body_worker" in cmdline


# -- every coding has a defined outcome ---------------------------------------


def stored_gzip(data: bytes) -> bytes:
    """gzip with stored (uncompressed) blocks: the plaintext is visible in the wire bytes."""
    return gzip.compress(data, compresslevel=0)


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def corrupt_crc(wire: bytes) -> bytes:
    return wire[:-8] + bytes(b ^ 0xFF for b in wire[-8:-4]) + wire[-4:]


DECODED = [
    ("identity", lambda d: d),
    ("", lambda d: d),
    ("gzip", stored_gzip),
    ("x-gzip", stored_gzip),
    ("GZIP", stored_gzip),
    ("deflate", zlib.compress),
    ("deflate", raw_deflate),
    ("br", brotli.compress),
    ("gzip, br", lambda d: brotli.compress(gzip.compress(d))),
    ("identity, gzip", stored_gzip),
]
UNDECODABLE = [
    ("x-compress", stored_gzip, "unknown content-encoding"),
    ("gzip, x-custom", stored_gzip, "unknown content-encoding"),
    ("gzip", lambda d: corrupt_crc(stored_gzip(d)), "corrupt gzip"),
    ("gzip", lambda d: stored_gzip(d)[:-6], "ends early"),
    ("gzip", lambda d: stored_gzip(d) + d, "after the end"),
    ("br", lambda d: d, "corrupt br"),
    ("zstd", lambda d: d, "corrupt zstd"),
]


@pytest.mark.parametrize(("coding", "encode"), DECODED)
def test_a_decodable_body_is_stored_decoded_and_redacted(proxy, client, coding, encode):
    marker = f"decoded-{os.urandom(6).hex()}"
    plain = json.dumps({"note": marker, "api_key": SECRET}).encode()
    path = f"/echo?decoded={marker}"
    assert post(client, path, encode(plain), coding).status_code == 200
    request, _ = exchange(proxy, path)
    stored = json.loads((proxy.logs / request["request_body"]).read_bytes())
    assert stored == {"note": marker, "api_key": "[REDACTED]"}
    assert "request_body_undecodable" not in request
    assert not files_holding(proxy.logs, SECRET.encode())


@pytest.mark.parametrize(("coding", "encode", "problem"), UNDECODABLE)
def test_an_undecodable_body_is_not_stored(proxy, client, coding, encode, problem):
    marker = f"undecodable-{os.urandom(6).hex()}".encode()
    wire = encode(b"plain text " + marker + b" " + SECRET.encode())
    assert marker in wire  # the raw bytes would show it, were they stored
    path = f"/hello?undecodable={marker.decode()}"  # /echo would send the marker back
    assert post(client, path, wire, coding).status_code == 200
    request, _ = exchange(proxy, path)
    assert request["request_body"] is None
    assert problem in request["request_body_undecodable"]
    assert files_holding(proxy.logs, marker) == [proxy.logs / "requests.jsonl"]  # the path only
    assert not files_holding(proxy.logs, SECRET.encode())


def test_an_undecodable_response_is_not_stored(proxy):
    path = "/bomb?coding=gzip&mib=1&label=x-compress"
    assert curl(proxy, f"https://{UPSTREAM}{path}", "-o", "/dev/null").returncode == 0
    _, response = exchange(proxy, path)
    assert response["response_body"] is None
    assert response["response_body_undecodable"] == "unknown content-encoding: x-compress"


def test_a_body_cut_by_the_cap_is_stored_as_a_redacted_prefix(proxy, client):
    """Compressed, longer than the cap on the wire: the prefix that decodes is
    stored, redacted, never the raw compressed bytes."""
    filler = os.urandom(2 * CAP).hex()  # hex compresses about 2:1, so the wire is ~2x the cap
    plain = f'{{"api_key": "{SECRET}", "data": "{filler}"}}'.encode()
    wire = brotli.compress(plain, quality=1)
    assert len(wire) > CAP
    assert post(client, "/echo?cut=1", wire, "br").status_code == 200
    _, closing = exchange(proxy, "/echo?cut=1")  # streamed: the body comes with the outcome
    assert closing["request_body_truncated"] is True
    stored = (proxy.logs / closing["request_body"]).read_bytes()
    assert stored.startswith(b'{"api_key": "[REDACTED]", "data": "')
    assert filler.encode().startswith(stored.removeprefix(b'{"api_key": "[REDACTED]", "data": "'))
    assert len(stored) > CAP // 2  # the decoded prefix, not nothing
    assert not files_holding(proxy.logs, SECRET.encode())
    assert not files_holding(proxy.logs, wire[1000:1100])  # no raw compressed bytes
