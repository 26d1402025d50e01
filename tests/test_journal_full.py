"""If the journal cannot be written, the request is refused: nothing goes unrecorded."""

from __future__ import annotations

import os

import pytest

from tests.conftest import UPSTREAM, proxy_args
from tests.harness import curl, fill, start_proxy, verify

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs (needs root)"),
]


def test_full_disk_refuses_requests_then_recovers(small_disk, upstream, upstream_ca):
    proxy = start_proxy(small_disk, *proxy_args(upstream, upstream_ca[1]))
    try:
        assert curl(proxy, f"https://{UPSTREAM}/hello").stdout == b"hello"
        filler = fill(small_disk)
        # The journal's last page may still have room for a line or two.
        for attempt in range(20):
            got = curl(proxy, f"https://{UPSTREAM}/refused/{attempt}", "-w", "\n%{http_code}")
            body, _, status = got.stdout.rpartition(b"\n")
            if status != b"404":
                break
        assert status == b"503"
        assert b"agentlog" in body and b"could not be recorded" in body
        assert upstream.hits[f"/refused/{attempt}"] == 0  # never forwarded
        proxy.wait_said("journal write failed")

        filler.unlink()
        assert curl(proxy, f"https://{UPSTREAM}/hello?again").stdout == b"hello"
    finally:
        proxy.stop()
    result = verify(small_disk)
    assert result.returncode == 0, result.stdout  # the failed write left no half line
    paths = [e["path"] for e in proxy.events("request")]
    assert f"/refused/{attempt}" not in paths and "/hello?again" in paths
    assert all(f"/refused/{i}" in paths for i in range(attempt))
