#!/usr/bin/env python3
"""The load generator: a small asyncio Protocol client (no httpx), run as its own
process by the bench scripts, so that its CPU does not compete with theirs.

Run:  python bench/loadgen.py JOB_JSON     (prints one JSON result line)

The job (a JSON object):

  kind           "load" or "sse"
  port           where to connect, on `host` (default 127.0.0.1)
  cafile         the CA that signed the certificate the client will see
  proxied        true: open a CONNECT tunnel to the upstream first
  upstream_port  the upstream's port, as the client names it
  name           the upstream's name: CONNECT target, TLS server name and Host
                 (default 127.0.0.1, where the upstream listens)
  pids           {name: pid} of the processes whose CPU % the result reports
                 (load only; the client's own CPU is added as "client")
  seconds        load: measured time; sse: time limit
  load:  conns (keep-alive connections, one request in flight on each), warmup
  sse:   runs (fresh tunnels, two requests each: cold then warm), sse_path

Run:  python bench/loadgen.py --serve     (one job per stdin line, one result line
                                          each; a first line {"ready": ...} says who
                                          runs it and its proxy and CA variables)

Each response is time-stamped in data_received, so the latency does not
include the client's own task scheduling.

It needs only the standard library and common.py beside it, so any python3
runs it: bench_sandbox.py runs a copy as the sandbox's unprivileged user.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import statistics
import sys
import time
from pathlib import Path

from common import HOST, cpu_share, cpu_snapshot, percentile


def command(job: dict) -> list[str]:
    """The command line that runs `job` in a process of its own."""
    return [sys.executable, str(Path(__file__).resolve()), json.dumps(job)]


def timeout(job: dict) -> float:
    """How long the caller waits for `job` before giving up on it."""
    return job["seconds"] + job.get("warmup", 0) + 30


class _Conn(asyncio.Protocol):
    """One HTTP/1.1 connection: a CONNECT answer or one response at a time.

    Completion is detected in data_received and time-stamped there, so the
    latency does not include the client's own task scheduling.
    """

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[None] | None = None
        self.expect = ""  # "connect" | "response"
        self.done_at = 0.0
        self.first_data_at = 0.0
        self.status_ok = True
        self.must_close = False  # the server said `connection: close`
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or ConnectionError("connection closed")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.waiter is None or self.waiter.done():
            return
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        if self.expect == "connect":
            self.status_ok = buf.startswith(b"HTTP/1.1 200") or buf.startswith(b"HTTP/1.0 200")
            del buf[:]
            self._finish()
            return
        if not self.first_data_at and buf.find(b"data:", end) >= 0:
            self.first_data_at = time.perf_counter()
        head = bytes(buf[:end]).lower()
        i = head.find(b"\r\ncontent-length:")
        if i >= 0:
            j = head.find(b"\r\n", i + 2)
            length = int(head[i + 17 : j if j >= 0 else len(head)])
            if len(buf) < end + 4 + length:
                return
            rest = buf[end + 4 + length :]
        elif b"\r\ntransfer-encoding: chunked" in head:
            if not buf.endswith(b"\r\n0\r\n\r\n") and buf[end + 4 :] != b"0\r\n\r\n":
                return
            rest = b""
        else:  # no body (e.g. 204); good enough for this benchmark
            rest = buf[end + 4 :]
        self.status_ok = buf.startswith(b"HTTP/1.1 200")
        if b"\r\nconnection: close" in head:
            self.must_close = True
        self.buf = bytearray(rest)
        self._finish()

    def _finish(self) -> None:
        self.done_at = time.perf_counter()
        assert self.waiter is not None
        self.waiter.set_result(None)

    async def roundtrip(self, data: bytes, expect: str = "response") -> float:
        """Send `data`, wait for the whole answer; return the send time."""
        if self.lost is not None:
            raise self.lost
        self.expect = expect
        self.first_data_at = 0.0
        self.waiter = asyncio.get_running_loop().create_future()
        t0 = time.perf_counter()
        self.transport.write(data)  # type: ignore[union-attr]
        await self.waiter
        return t0

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def authority(job: dict) -> str:
    """The upstream as the client names it: the CONNECT target and the Host header."""
    return f"{job.get('name', HOST)}:{job['upstream_port']}"


async def connect(job: dict) -> _Conn:
    """A TLS connection to the upstream, directly or through a CONNECT tunnel."""
    loop = asyncio.get_running_loop()
    ctx = ssl.create_default_context(cafile=job["cafile"])
    ctx.set_alpn_protocols(["http/1.1"])
    # "host": where to connect (default 127.0.0.1); a name is resolved as the client's
    # resolver does (in a sandbox: agentlog's DNS)
    transport, conn = await loop.create_connection(_Conn, job.get("host", HOST), job["port"])
    if job["proxied"]:
        target = authority(job)
        await conn.roundtrip(
            f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode(), "connect"
        )
        if not conn.status_ok:
            raise RuntimeError(f"CONNECT refused by the proxy on port {job['port']}")
    tls = await loop.start_tls(transport, conn, ctx, server_hostname=job.get("name", HOST))
    if tls is None:
        raise RuntimeError("TLS handshake failed")
    conn.transport = tls
    return conn


async def _load(job: dict) -> dict:
    """`conns` connections, each doing sequential GETs, for warmup + seconds."""
    request = f"GET /hello HTTP/1.1\r\nHost: {authority(job)}\r\n\r\n".encode()
    conns = await asyncio.gather(*(connect(job) for _ in range(job["conns"])))
    start = time.perf_counter() + job["warmup"]
    end = start + job["seconds"]
    samples: list[tuple[float, float]] = []
    errors = reconnects = 0
    cpu: dict[str, dict[str, float]] = {}

    async def worker(conn: _Conn) -> None:
        # hypercorn ends a connection after 1000 requests (keep_alive_max_requests),
        # with `connection: close`, which the proxies pass on: dial again then.
        nonlocal errors, reconnects
        while time.perf_counter() < end:
            if conn.must_close:
                conn.close()
                conn = await connect(job)
                reconnects += 1
            t0 = await conn.roundtrip(request)
            if not conn.status_ok:
                errors += 1
            if conn.done_at >= start:
                samples.append((t0, conn.done_at))
        conn.close()

    async def cpu_probe() -> None:
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        cpu["start"] = cpu_snapshot(job["pids"])
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        cpu["end"] = cpu_snapshot(job["pids"])

    await asyncio.gather(cpu_probe(), *(worker(c) for c in conns))
    in_window = sorted(t1 - t0 for t0, t1 in samples if t1 <= end)
    wall = end - start
    return {
        "requests": len(in_window),
        "rps": len(in_window) / wall,
        "p50_ms": percentile(in_window, 0.50) * 1000,
        "p99_ms": percentile(in_window, 0.99) * 1000,
        "errors": errors,
        "reconnects": reconnects,
        "cpu_pct": cpu_share(cpu["start"], cpu["end"], wall),
    }


async def _sse(job: dict) -> dict:
    """Fresh tunnel per run; two SSE requests on it (cold, then warm)."""
    path = job["sse_path"]
    request = f"GET {path} HTTP/1.1\r\nHost: {authority(job)}\r\n\r\n".encode()
    deadline = time.perf_counter() + job["seconds"]
    cold: list[float] = []
    warm: list[float] = []
    errors = 0
    for _ in range(job["runs"]):
        if time.perf_counter() >= deadline:
            break
        conn = await connect(job)
        try:
            for bucket in (cold, warm):
                t0 = await conn.roundtrip(request)
                if not conn.status_ok or not conn.first_data_at:
                    errors += 1
                    continue
                bucket.append((conn.first_data_at - t0) * 1000)
        finally:
            conn.close()
    return {
        "runs": len(cold),
        "cold_ms": statistics.median(cold) if cold else float("nan"),
        "warm_ms": statistics.median(warm) if warm else float("nan"),
        "cold_all_ms": [round(v, 3) for v in cold],
        "warm_all_ms": [round(v, 3) for v in warm],
        "errors": errors,
    }


def run(job: dict) -> dict:
    return asyncio.run(_sse(job) if job["kind"] == "sse" else _load(job))


SERVE_ENV = ("HTTPS_PROXY", "SSL_CERT_FILE")


def serve() -> int:
    """Jobs from stdin, results to stdout, a line each, until stdin ends. A job that
    fails answers {"error": ...}: the caller reports it, this keeps serving."""
    ready = {"uid": os.getuid(), "env": {k: os.environ.get(k) for k in SERVE_ENV}}
    print(json.dumps({"ready": ready}), flush=True)
    for line in sys.stdin:
        try:
            result = run(json.loads(line))
        except Exception as e:  # noqa: BLE001 - said to the caller, who decides
            result = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(result), flush=True)
    return 0


def main() -> int:
    if sys.argv[1:] == ["--serve"]:
        return serve()
    if len(sys.argv) != 2:
        print("usage: loadgen.py JOB_JSON | loadgen.py --serve", file=sys.stderr)
        return 2
    print(json.dumps(run(json.loads(sys.argv[1]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
