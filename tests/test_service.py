"""The proxy embedded in a plain asyncio program: in this process, no signals, no subprocess.

This is how `agentlog up` and `agentlog run` host it next to other services.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import sys
import time
from pathlib import Path

import httpx
import pytest

from agentlog.cli import build_parser
from agentlog.config import ProxyConfig
from agentlog.errors import StartupError
from agentlog.journal import chain
from agentlog.logsdir import LogsDir
from agentlog.options import proxy_config
from agentlog.proxy.service import Listener, RecordingProxy
from tests.conftest import UPSTREAM, assert_every_request_closed_once, proxy_args
from tests.harness import verify

pytestmark = pytest.mark.timeout(60)


def make_config(logs: Path, upstream, upstream_ca, *extra: str) -> ProxyConfig:
    args = ["proxy", "--logs", str(logs), "--listen", "127.0.0.1:0"]
    args += proxy_args(upstream, upstream_ca[1]) + list(extra)
    return proxy_config(build_parser().parse_args(args))


def events(logs: Path) -> list[dict]:
    return [json.loads(line) for line in (logs / "requests.jsonl").read_bytes().splitlines()]


def client(proxy: RecordingProxy, listener: Listener) -> httpx.AsyncClient:
    tls = ssl.create_default_context(cafile=str(proxy.logs.ca_cert))
    url = f"http://{listener.host}:{listener.port}"
    return httpx.AsyncClient(proxy=url, verify=tls, timeout=20)


def test_embedded_proxy_records_an_exchange_and_stops_cleanly(tmp_path, upstream, upstream_ca):
    logs = tmp_path / "logs"
    config = make_config(logs, upstream, upstream_ca)
    # The import above loaded mitmproxy before any key log was set up: keys.log must
    # still receive the secrets (the service installs mitmproxy's key logger itself).
    assert "mitmproxy.net.tls" in sys.modules
    said: list[str] = []

    async def program() -> tuple[list[Listener], tuple[int, str], str, set[asyncio.Task]]:
        async with RecordingProxy(config, LogsDir(logs), announce=said.append) as proxy:
            listeners = await proxy.ready()
            async with client(proxy, listeners[0]) as http:
                response = await http.get(f"https://{UPSTREAM}/hello")
            proxy.stop()
            head = await proxy.wait()
        left = asyncio.all_tasks() - {asyncio.current_task()}
        return listeners, head, response.text, left

    listeners, head, text, left = asyncio.run(program())

    assert text == "hello"
    assert [(li.mode, li.host) for li in listeners] == [("regular", "127.0.0.1")]
    port = listeners[0].port
    assert port != 0
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))  # stopped: nobody listens any more
    assert not left, f"tasks left running: {left}"

    journal = events(logs)
    assert [(e["event"], e.get("action")) for e in journal] == [
        ("journal", "start"),
        ("request", None),
        ("response", None),
        ("journal", "stop"),
    ]
    assert journal[0]["listening"] == f"127.0.0.1:{port} (regular)"
    assert len({e["session"] for e in journal}) == 1
    assert journal[1]["id"] == journal[2]["id"] != journal[0]["id"] != journal[3]["id"]
    assert journal[1]["domain"] == UPSTREAM and journal[2]["status"] == 200
    assert verify(logs).returncode == 0

    key = bytes.fromhex((logs / "journal.key").read_text().strip())
    last_line = (logs / "requests.jsonl").read_bytes().splitlines(keepends=True)[-1]
    assert head == (4, chain.digest(key, last_line))
    assert said[0] == f"listening on 127.0.0.1:{port} (regular)"
    assert said[1].startswith(f"CA {logs / 'ca.crt'} SHA-256 ")
    assert said[2].startswith("journal head seq=0 hmac=")  # as found: before its own start
    assert said[-1] == f"stopped; journal head seq={head[0]} hmac={head[1]}"

    keylog = (logs / "keys.log").read_text()
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keylog or "CLIENT_RANDOM" in keylog


def test_stop_records_the_exchanges_it_cuts(tmp_path, upstream, upstream_ca):
    """An open stream at stop ends in an `error` event, before the journal's `stop`."""
    logs = tmp_path / "logs"
    config = make_config(logs, upstream, upstream_ca)

    async def program() -> float:
        async with RecordingProxy(config, LogsDir(logs), announce=lambda _: None) as proxy:
            listeners = await proxy.ready()
            async with client(proxy, listeners[0]) as http:
                url = f"https://{UPSTREAM}/sse?n=3&hold_ms=60000"
                async with http.stream("GET", url) as response:
                    lines = response.aiter_lines()
                    assert await anext(lines) == "data: 0"
                    started = time.monotonic()
                    proxy.stop()
                    await proxy.wait()
                    return time.monotonic() - started

    took = asyncio.run(program())

    assert took < 5
    journal = events(logs)
    assert_every_request_closed_once(journal)
    assert [e["event"] for e in journal] == ["journal", "request", "error", "journal"]
    assert journal[2]["stage"] == "response"
    assert journal[-1]["action"] == "stop"
    assert verify(logs).returncode == 0


def test_a_listener_that_cannot_bind_fails_ready(tmp_path, upstream, upstream_ca):
    logs = tmp_path / "logs"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = make_config(logs, upstream, upstream_ca, "--listen", f"127.0.0.1:{port}")

        async def program() -> None:
            async with RecordingProxy(config, LogsDir(logs), announce=lambda _: None) as proxy:
                await proxy.ready()

        with pytest.raises(StartupError, match=f"cannot listen for regular mode .*:{port}"):
            asyncio.run(program())

    assert events(logs) == []  # it never served: no start, no stop

    async def again() -> None:  # and it let go of the journal
        async with RecordingProxy(
            make_config(logs, upstream, upstream_ca), LogsDir(logs), announce=lambda _: None
        ) as proxy:
            await proxy.ready()

    asyncio.run(again())
    assert [e["action"] for e in events(logs)] == ["start", "stop"]


def test_stop_before_ready(tmp_path, upstream, upstream_ca):
    logs = tmp_path / "logs"
    config = make_config(logs, upstream, upstream_ca)

    async def program() -> None:
        async with RecordingProxy(config, LogsDir(logs), announce=lambda _: None) as proxy:
            proxy.stop()
            await proxy.ready()

    with pytest.raises(StartupError, match="stopped before it was listening"):
        asyncio.run(program())
