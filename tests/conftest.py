"""Shared fixtures: a test CA, a fake HTTPS upstream signed by it, and the proxy in front.

The proxy always runs with an allowlist naming only the fakes, and routes
their names to 127.0.0.1, so no test can dial anything outside this machine.
"""

from __future__ import annotations

import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests import hoststate
from tests.browser import chromium, watched_page
from tests.fakes.certs import CA, make_ca
from tests.fakes.upstream import FakeUpstream
from tests.harness import RunningProxy, start_proxy

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

UPSTREAM = "upstream.test"
API = "api.fake.test"
RESET = "reset.test"
DOWN = "down.test"
BLOCKED = "blocked.test"
PLAIN = "plain.test"  # plain HTTP


@pytest.fixture(scope="session", autouse=True)
def host_left_as_found() -> Iterator[None]:
    """The suite makes namespaces, links and rulesets; at its end the host is as it was."""
    if os.geteuid() != 0:
        yield
        return
    before = hoststate.snapshot()
    yield
    after = hoststate.snapshot()
    assert after == before, "the tests left the host changed:\n" + hoststate.differences(
        before, after
    )


@pytest.fixture(scope="session")
def upstream_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[CA, Path]:
    ca = make_ca("agentlog test upstream CA")
    return ca, ca.write(tmp_path_factory.mktemp("upstream-ca"))


@pytest.fixture(scope="session")
def upstream(upstream_ca, tmp_path_factory) -> Iterator[FakeUpstream]:
    ca, _ = upstream_ca
    names = [UPSTREAM, API, RESET, DOWN, "localhost", "127.0.0.1"]
    with FakeUpstream.from_ca(ca, tmp_path_factory.mktemp("upstream"), names=names) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, for a module's browser tests (they skip without it)."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page; the test fails on a dialog, a page error or a CSP violation."""
    with watched_page(browser, accept_downloads=True) as opened:
        yield opened


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proxy_args(upstream: FakeUpstream, ca_file: Path) -> list[str]:
    """Allow only the fakes; route every fake name to its local port."""
    args = ["--upstream-ca", str(ca_file)]
    for name in (UPSTREAM, API, RESET, DOWN, PLAIN):
        args += ["--allow", name]
    args += [
        "--route",
        f"{UPSTREAM}=127.0.0.1:{upstream.port}",
        "--route",
        f"{API}=127.0.0.1:{upstream.port}",
        "--route",
        f"{RESET}=127.0.0.1:{upstream.reset_port}",
        "--route",
        f"{DOWN}=127.0.0.1:{free_port()}",
        "--route",
        f"{PLAIN}=127.0.0.1:{upstream.plain_port}",
    ]
    return args


def assert_every_request_closed_once(events: list[dict]) -> None:
    """Each request and each TCP relay is recorded once and followed by exactly one outcome."""
    closing = {"request": ("response", "error", "blocked"), "tcp": ("tcp_end", "blocked")}
    opened = [e for e in events if e["event"] in closing]
    assert len({e["id"] for e in opened}) == len(opened), "an exchange recorded twice"
    for first in opened:
        outcomes = [
            e for e in events if e["id"] == first["id"] and e["event"] in closing[first["event"]]
        ]
        where = first.get("path") or f"{first['domain']}:{first['port']}"
        assert len(outcomes) == 1, f"{first['event']} {where}: outcomes {outcomes}"
        assert outcomes[0]["seq"] > first["seq"]
    ids = {e["id"] for e in opened}
    assert all(e["id"] in ids for e in events if e["event"] == "tcp_end"), "a tcp_end alone"


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 4 MiB tmpfs for a logs directory, to be filled (needs root)."""
    mount = tmp_path / "logs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def proxy(tmp_path, upstream, upstream_ca) -> Iterator[RunningProxy]:
    running = start_proxy(tmp_path / "logs", *proxy_args(upstream, upstream_ca[1]))
    yield running
    assert running.stop() == 0
    assert_every_request_closed_once(running.events())


class PreferH2(ssl.SSLContext):
    """httpx always offers ALPN http/1.1 before h2, and mitmproxy honours the
    client's order; a client that prefers HTTP/2 offers h2 first."""

    def set_alpn_protocols(self, protocols) -> None:
        super().set_alpn_protocols(sorted(protocols, key=lambda p: p != "h2"))


def prefer_h2_context(cafile: Path) -> ssl.SSLContext:
    context = PreferH2(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(cafile))
    return context


@pytest.fixture
def agent_tls(proxy: RunningProxy) -> ssl.SSLContext:
    """What an agent has: trust in agentlog's CA and nothing else."""
    return ssl.create_default_context(cafile=str(proxy.ca))
