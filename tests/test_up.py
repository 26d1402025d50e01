"""`agentlog up`: the proxy and its companions supervised as one.

SIGTERM stops everything cleanly; a companion that dies stops everything,
says which and why, and exits 1; what the firewall drops becomes `bypass`
events within 5 s.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from agentlog.cli import build_parser
from agentlog.logsdir import LogsDir
from agentlog.options import proxy_config
from agentlog.services import ServiceDied, Services
from tests import probes
from tests.conftest import free_port, proxy_args
from tests.harness import verify
from tests.netns import AgentNamespace, can_make_namespaces
from tests.sandbox_runs import events, wait_for

pytestmark = pytest.mark.timeout(90)

_READY = re.compile(r"agentlog up: listening on ")


def start_up(logs, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentlog", "up", "--logs", str(logs), *args],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert _READY.search(line), line + (proc.stderr.read() if proc.poll() is not None else "")
    return proc


def stopped_cleanly(logs) -> None:
    found = events(logs)
    assert found[0]["event"] == "journal" and found[0]["action"] == "start"
    assert found[-1]["event"] == "journal" and found[-1]["action"] == "stop"
    assert verify(logs).returncode == 0


def test_sigterm_stops_everything_with_a_complete_journal(tmp_path, upstream, upstream_ca):
    logs = tmp_path / "logs"
    up = start_up(logs, "--listen", "127.0.0.1:0", *proxy_args(upstream, upstream_ca[1]))
    up.send_signal(signal.SIGTERM)
    assert up.wait(30) == 0
    assert "stopped; journal head" in (up.stderr.read() if up.stderr else "")
    stopped_cleanly(logs)


def test_a_companion_that_dies_stops_everything_and_says_so(tmp_path, upstream, upstream_ca):
    logs = tmp_path / "logs"
    args = proxy_args(upstream, upstream_ca[1])
    up = start_up(logs, "--listen", "127.0.0.1:0", "--firewall-table", "agentlog_none", *args)
    assert up.wait(30) == 1
    said = up.stderr.read() if up.stderr else ""
    assert "agentlog: error: the bypass poller stopped" in said
    assert "agentlog_none" in said and "Traceback" not in said
    stopped_cleanly(logs)


def test_ui_is_served_beside_the_proxy(tmp_path, upstream, upstream_ca):
    """`up --ui` runs `agentlog ui` as a supervised child: it answers with the token only."""
    logs = tmp_path / "logs"
    port = free_port()
    args = proxy_args(upstream, upstream_ca[1])
    up = start_up(logs, "--listen", "127.0.0.1:0", "--ui", f"127.0.0.1:{port}", *args)
    try:
        url = f"http://127.0.0.1:{port}/api/exchanges"
        deadline = time.monotonic() + 30
        while True:
            try:
                token = (logs / "ui-token").read_text().strip()
                with httpx.Client(timeout=5) as client:
                    answer = client.get(url, headers={"Authorization": f"Bearer {token}"})
                    refused = client.get(url)
                break
            except (OSError, httpx.HTTPError):
                assert time.monotonic() < deadline, "the UI never answered"
                time.sleep(0.2)
        assert answer.status_code == 200 and "items" in answer.json()
        assert refused.status_code == 401
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0
    stopped_cleanly(logs)


def test_the_ui_child_is_supervised(tmp_path, upstream, upstream_ca):
    """The UI's hook: a child process whose end ends the group (here a stand-in child)."""
    logs = tmp_path / "logs"
    argv = ["up", "--logs", str(logs), "--listen", "127.0.0.1:0"]
    config = proxy_config(build_parser().parse_args(argv + proxy_args(upstream, upstream_ca[1])))

    async def program() -> str:
        services = Services(config, LogsDir(logs), announce=lambda _: None)
        services.ui_command = [sys.executable, "-c", "import time; time.sleep(0.5)"]
        async with services:
            try:
                await services.wait(asyncio.Event().wait())
            except ServiceDied as e:
                return str(e)
        return "no failure"

    said = asyncio.run(program())
    assert said == "the UI stopped (exit status 0); everything was stopped"
    stopped_cleanly(logs)


@pytest.mark.skipif(not can_make_namespaces(), reason="needs root, ip, nft")
def test_what_the_firewall_drops_is_journalled_within_5s(tmp_path, upstream, upstream_ca):
    logs = tmp_path / "logs"
    with AgentNamespace() as ns:
        explicit, transparent, dns = free_port(), free_port(), free_port()
        fw = ns.firewall(explicit=explicit, transparent=transparent, dns=dns)
        up = start_up(
            logs,
            *(
                "--listen",
                f"{ns.host_ip}:{explicit}",
                "--transparent",
                f"{ns.host_ip}:{transparent}",
            ),
            *("--dns", f"{ns.host_ip}:{dns}", "--firewall-table", fw.table),
            *proxy_args(upstream, upstream_ca[1]),
        )
        try:
            sent = time.monotonic()
            assert probes.udp(ns.name, ns.host_ip, 9999, count=2) is None
            found = wait_for(logs, lambda es: any(e["event"] == "bypass" for e in es), timeout=5)
            assert time.monotonic() - sent <= 5
            [bypass] = [e for e in found if e["event"] == "bypass"]
            assert (bypass["protocol"], bypass["destination"], bypass["port"]) == (
                "udp",
                ns.host_ip,
                9999,
            )
            assert bypass["packets"] == 2
        finally:
            up.send_signal(signal.SIGTERM)
            assert up.wait(30) == 0
    stopped_cleanly(logs)
