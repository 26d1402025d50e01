"""Who gets into agentlog ui: the token, the Host header, the headers, the download ids."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlog.ui.auth import CSP, host_allowed
from tests.fakes.journal import JournalMaker
from tests.ui_harness import RunningUI, last_seq, start_ui

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> Iterator[RunningUI]:
    logs = tmp_path_factory.mktemp("access") / "logs"
    logs.mkdir()
    JournalMaker(logs).write(50)
    (logs / "capture_20260101_000000.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(20))
    (logs / "journal.key").write_text("secret-key\n")
    running = start_ui(logs)
    running.wait_indexed(last_seq(logs))
    yield running
    assert running.stop() == 0


def routes(ui: RunningUI) -> list[str]:
    """Every route, from the OpenAPI schema, with real ids filled in; and the page's."""
    with ui.client() as c:
        schema = c.get("/api/openapi.json").json()
        row = c.get("/api/exchanges", params={"limit": 1}).json()["items"][0]
    values = {"id": row["id"], "which": "request"}
    paths = ["/", "/static/app.js", "/api/openapi.json", "/nowhere"]
    for template in schema["paths"]:
        paths.append(template.format(**values))
    paths.append(f"/api/sessions/{row['session']}/pcap")
    paths.append("/api/captures/20260101_000000")
    return paths


def test_the_token_file_is_private(ui):
    mode = stat.S_IMODE(os.stat(ui.logs / "ui-token").st_mode)
    assert mode == 0o600
    assert (ui.logs / "ui-token").read_text().strip() == ui.token


def test_every_route_is_401_without_the_token(ui):
    paths = routes(ui)
    assert len(paths) >= 16
    with ui.client(auth=False) as c:
        for path in paths:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": "agentlog_ui=wrong"}):
                got = c.get(path, headers=headers)
                assert got.status_code == 401, (path, headers, got.status_code)
                assert got.headers["content-security-policy"] == CSP
            assert c.get(path, params={"token": ui.token[:-1]}).status_code == 401


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8888", "127.0.0.1.nip.io", "10.0.0.1"]
)
def test_a_foreign_host_header_is_refused_even_with_the_token(ui, host):
    with ui.client() as c:
        got = c.get("/api/status", headers={"Host": host})
    assert got.status_code == 421
    assert got.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("host", ["localhost", "localhost:1234", "127.0.0.1:9", "[::1]:8888"])
def test_local_names_on_any_port_are_accepted(ui, host):
    """An SSH tunnel may arrive on another local port."""
    with ui.client() as c:
        assert c.get("/api/status", headers={"Host": host}).status_code == 200


def test_the_token_in_the_url_becomes_a_strict_cookie(ui):
    with httpx.Client(base_url=ui.base, follow_redirects=False) as browser:
        first = browser.get("/", params={"token": ui.token, "domain": "*.github.com"})
        assert first.status_code == 303
        assert first.headers["location"] == "/?domain=%2A.github.com"
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        # From now on the cookie alone opens every route.
        assert browser.get("/api/status").status_code == 200
        assert browser.get("/api/exchanges").status_code == 200


def test_security_headers_on_every_answer(ui):
    with ui.client() as c:
        answers = [c.get("/api/status"), c.get("/api/exchanges/nope"), c.get("/nowhere")]
    with ui.client(auth=False) as c:
        answers.append(c.get("/api/status"))
    for got in answers:
        assert got.headers["content-security-policy"] == CSP
        assert "'unsafe-inline'" not in CSP and "unsafe-eval" not in CSP
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["referrer-policy"] == "no-referrer"


def raw_get(ui: RunningUI, raw_path: str) -> int:
    """A GET with the path exactly as given (no client-side normalising of .. or %2F)."""
    out = subprocess.run(
        [
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--path-as-is",
            "-H", f"Authorization: Bearer {ui.token}", ui.base + raw_path,
        ],
        capture_output=True, text=True, timeout=20, check=True,
    )  # fmt: skip
    return int(out.stdout)


@pytest.mark.parametrize(
    "path",
    [
        "/api/captures/..%2Fjournal.key",
        "/api/captures/../journal.key",
        "/api/captures/%2Fetc%2Fpasswd",
        "/api/captures/capture_20260101_000000.pcap",  # a name is not an id
        "/api/captures/20990101_000000",
        "/api/exchanges/..%2F..%2Fjournal.key",
        "/api/exchanges/..%2F..%2Fjournal.key/bodies/request",
        "/api/exchanges/%2Fetc%2Fpasswd/pcap",
        "/api/exchanges/01NOSUCHEXCHANGE0000000000/bodies/request",
        "/api/sessions/..%2F..%2F/pcap",
        "/static/../journal.key",
        "/static/..%2F..%2F..%2Fjournal.key",
        "/static/%2Fetc%2Fpasswd",
        "/../journal.key",
        "/journal.key",
        "/ui-token",
    ],
)
def test_path_tricks_and_unknown_ids_are_404(ui, path):
    assert raw_get(ui, path) == 404


def test_a_body_path_trick_in_which_is_404(ui):
    row = ui.get("/api/exchanges", method="POST", limit=1).json()["items"][0]
    assert raw_get(ui, f"/api/exchanges/{row['id']}/bodies/request") == 200
    for which in ("..%2F..%2Fjournal.key", "%2Fetc%2Fpasswd", "headers"):
        assert raw_get(ui, f"/api/exchanges/{row['id']}/bodies/{which}") == 404


def test_captures_are_listed_and_downloaded_by_id(ui):
    (item,) = ui.get("/api/captures").json()["items"]
    assert item["id"] == "20260101_000000" and item["size"] == 24
    got = ui.get(item["download"])
    assert got.content == (ui.logs / item["name"]).read_bytes()
    assert got.headers["content-type"] == "application/vnd.tcpdump.pcap"


@given(st.text(max_size=40))
def test_only_local_names_pass_the_host_check(host):
    allowed = host_allowed(host, "127.0.0.1")
    name = host.strip().lower()
    local = {"localhost", "127.0.0.1", "[::1]", "::1"}
    if allowed:
        assert any(name == n or name.startswith(n + ":") for n in local) or name in local


def test_a_bad_listen_value_is_one_line(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "agentlog", "ui", "--logs", str(logs), "--listen", "nowhere"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--listen" in proc.stderr
