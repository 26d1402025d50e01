"""A full disk costs TLS secrets, not the proxy: keys.log failures are recorded once,
keys.log keeps only whole lines, and nothing raises inside OpenSSL."""

from __future__ import annotations

import os
import re

import pytest

from agentlog.proxy.keylog import KeyLog
from tests.conftest import UPSTREAM, proxy_args
from tests.harness import curl, fill, start_proxy, verify

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs (needs root)"),
]

LINE = re.compile(rb"[A-Z_0-9]+ [0-9a-f]{64} [0-9a-f]{64,}\n")


def secret(n: int) -> bytes:
    return b"CLIENT_TRAFFIC_SECRET_0 " + b"%064x" % n + b" " + b"ab" * 48


def assert_whole_lines(data: bytes) -> None:
    lines = data.splitlines(keepends=True)
    assert all(LINE.fullmatch(line) for line in lines if line != b"\n"), "a cut or glued line"


def test_a_full_disk_is_noted_once_per_outage_and_leaves_whole_lines(small_disk):
    notes: list[tuple[str, dict]] = []
    keylog = KeyLog(
        small_disk / "keys.log", lambda action, **fields: notes.append((action, fields))
    )
    for n in range(5):
        keylog(None, secret(n))
    assert notes == []

    for outage in range(2):
        filler = fill(small_disk)
        lost = 0
        for n in range(200):  # the last page's slack first, then nothing
            keylog(None, secret(n))  # never raises
            lost += keylog.outage is not None
        assert lost > 100
        assert [action for action, _ in notes] == ["keylog_failed", "keylog_recovered"] * outage + [
            "keylog_failed"
        ]
        assert notes[-1][1] == {"file": "keys.log", "error": "No space left on device"}
        assert_whole_lines((small_disk / "keys.log").read_bytes())

        filler.unlink()
        keylog(None, secret(999))
        action, fields = notes[-1]
        assert action == "keylog_recovered" and fields["lost_lines"] == lost
        assert fields["error"] == "No space left on device" and fields["failed_since"]
        assert (small_disk / "keys.log").read_bytes().endswith(secret(999) + b"\n")
    keylog.close()
    assert_whole_lines((small_disk / "keys.log").read_bytes())


def test_a_line_cut_short_before_does_not_swallow_the_next(tmp_path):
    path = tmp_path / "keys.log"
    path.write_bytes(secret(1) + b"\n" + secret(2)[:40])  # a crash mid-write, earlier
    keylog = KeyLog(path, lambda *a, **k: None)
    keylog(None, secret(3))
    keylog.close()
    assert path.read_bytes().splitlines()[-1] == secret(3)
    assert oct(path.stat().st_mode & 0o777) == "0o644"  # an existing file keeps its mode
    fresh = tmp_path / "new.log"
    KeyLog(fresh, lambda *a, **k: None)(None, secret(4))
    assert oct(fresh.stat().st_mode & 0o777) == "0o600"


def test_the_proxy_on_a_full_disk_records_lost_secrets(small_disk, upstream, upstream_ca):
    proxy = start_proxy(small_disk, *proxy_args(upstream, upstream_ca[1]))
    try:
        assert curl(proxy, f"https://{UPSTREAM}/hello").stdout == b"hello"
        filler = fill(small_disk)
        for attempt in range(20):  # TLS handshakes go on (the requests get a 503)
            curl(proxy, f"https://{UPSTREAM}/hello?full={attempt}")
        filler.unlink()
        assert curl(proxy, f"https://{UPSTREAM}/hello?again").stdout == b"hello"
        proxy.wait_for(
            lambda es: any(e.get("action") == "keylog_recovered" for e in es), timeout=10
        )
    finally:
        assert proxy.stop() == 0
    stderr = "".join(proxy.stderr)
    assert "cffi callback" not in stderr and "OSError" not in stderr, stderr
    # (Python 3.12.1's asyncio may print a CancelledError at exit: not ours to judge.)
    serving = stderr.partition("stopped; journal head")[0]
    assert "Traceback" not in serving, stderr
    assert stderr.count("keys.log write failed") == 1

    notes = [e for e in proxy.events("journal") if e["action"].startswith("keylog_")]
    # keylog_failed may have met a journal as full as keys.log; keylog_recovered says it all.
    assert [e["action"] for e in notes] in (
        ["keylog_failed", "keylog_recovered"],
        ["keylog_recovered"],
    )
    recovered = notes[-1]
    assert recovered["lost_lines"] > 0 and recovered["error"] == "No space left on device"
    assert_whole_lines((small_disk / "keys.log").read_bytes())
    assert verify(small_disk).returncode == 0
