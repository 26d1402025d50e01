"""kill -9 under load: nothing that reached the upstream goes unrecorded."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time

import httpx
import pytest

from tests.conftest import UPSTREAM, proxy_args
from tests.harness import start_proxy, verify

pytestmark = pytest.mark.timeout(120)
N = 200


async def fire(proxy_url: str, tls: ssl.SSLContext) -> None:
    limits = httpx.Limits(max_connections=N, max_keepalive_connections=N)
    async with httpx.AsyncClient(proxy=proxy_url, verify=tls, limits=limits, timeout=30) as client:

        async def one(i: int) -> None:
            # Spread over a second, so that the kill lands mid-traffic however fast we are.
            await asyncio.sleep(i * 0.005)
            with contextlib.suppress(httpx.HTTPError):  # the proxy dies under us
                await client.get(f"https://{UPSTREAM}/crash/{i}")

        await asyncio.gather(*(one(i) for i in range(N)))


def test_kill_9_during_200_concurrent_requests(tmp_path, upstream, upstream_ca):
    logs = tmp_path / "logs"
    proxy = start_proxy(logs, *proxy_args(upstream, upstream_ca[1]))
    tls = ssl.create_default_context(cafile=str(proxy.ca))
    reached = lambda: {p for p in upstream.hits if p.startswith("/crash/")}  # noqa: E731
    load = threading.Thread(target=asyncio.run, args=(fire(proxy.url, tls),), daemon=True)
    load.start()
    deadline = time.monotonic() + 60
    while len(reached()) < N // 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    proxy.kill()  # SIGKILL, mid-traffic
    load.join(60)
    hit = reached()
    assert N // 3 <= len(hit) < N, "the kill should land while requests are in flight"

    # Every request that reached the upstream was written ahead.
    lines = (logs / "requests.jsonl").read_bytes().splitlines(keepends=True)
    complete = [line for line in lines if line.endswith(b"\n")]
    recorded = {p for p in hit if any(f'"path":"{p}"'.encode() in line for line in complete)}
    assert recorded == hit

    first = verify(logs)
    if complete != lines:  # the kill tore the last line: reported as such, the rest holds
        assert first.returncode == 1
        assert f":{len(lines)}: torn last line" in first.stdout
    else:
        assert first.returncode == 0, first.stdout

    restarted = start_proxy(logs, *proxy_args(upstream, upstream_ca[1]))
    with httpx.Client(proxy=restarted.url, verify=tls, timeout=20) as client:
        assert client.get(f"https://{UPSTREAM}/hello").text == "hello"
    restarted.wait_for(
        lambda es: any(e["event"] == "response" and e["status"] == 200 for e in es[len(complete) :])
    )
    assert restarted.stop() == 0
    after = verify(logs)
    assert after.returncode == 0, after.stdout
    events = restarted.events()
    seqs = [e["seq"] for e in events]
    if complete == lines:
        assert seqs == list(range(1, len(seqs) + 1))  # seq continued across the crash
    else:  # the torn line's seq is skipped, by a recovery event saying so; none is reused
        recovered = events[len(complete)]
        assert (recovered["action"], recovered["skipped_from"]) == ("recovered", len(complete) + 1)
        assert seqs == [*range(1, len(complete) + 1), *range(recovered["seq"], seqs[-1] + 1)]
