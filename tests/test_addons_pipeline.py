"""Our addons as app.py assembles them: each needs the one before it to have run
(the gate's decision before the recorders, the gate's refusal before the router)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy import connection, http, master
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers import http as http_hooks
from mitmproxy.proxy.layers import tcp as tcp_hooks
from mitmproxy.test import tflow, tutils

from agentlog.cli import build_parser
from agentlog.config import ProxyConfig
from agentlog.options import proxy_config
from agentlog.proxy.addons import Pipeline
from agentlog.proxy.addons.lifecycle import Lifecycle
from agentlog.proxy.app import build_master
from agentlog.redact import Redactor
from tests.addon_support import Journal


def config(logs: Path) -> ProxyConfig:
    """Built as `agentlog proxy` builds it: defaults from the option table."""
    argv = ["proxy", "--logs", str(logs), "--listen", "127.0.0.1:0", "--body-cap", "1024"]
    argv += ["--allow", "api.test", "--allow", "echo.test", "--deny", "evil.test"]
    argv += ["--route", "api.test=127.0.0.1:9443"]
    return proxy_config(build_parser().parse_args(argv))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path) as j:
        yield j


def through_pipeline(journal: Journal, *hooks) -> None:
    """Run `hooks` through the Pipeline of a Master built by app.py (never started)."""

    async def play() -> None:
        lifecycle = Lifecycle(lambda listeners: None, lambda reason: None)
        proxy: master.Master = build_master(
            config(journal.logs.root), journal.logs, journal.sink, Redactor(), lifecycle, None
        )
        [pipeline] = [a for a in proxy.addons.chain if isinstance(a, Pipeline)]
        for hook in hooks:
            await proxy.addons.invoke_addon(pipeline, hook)

    asyncio.run(play())


def request_to(host: str) -> http.HTTPFlow:
    headers = http.Headers(host=host, content_length="2")
    req = tutils.treq(host=host, port=443, scheme=b"https", headers=headers, content=b"{}")
    return tflow.tflow(req=req)


def test_a_refused_request_is_recorded_as_blocked_in_its_canonical_spelling(journal):
    flow = request_to("EVIL.test.")
    through_pipeline(
        journal, http_hooks.HttpRequestHeadersHook(flow), http_hooks.HttpRequestHook(flow)
    )
    assert flow.response is not None and flow.response.status_code == 403
    [x] = journal.exchanges()
    assert (x["decision"], x["domain"], x["blocked"]["rule"]) == (
        "blocked",
        "evil.test",
        "deny evil.test",
    )


def test_an_allowed_request_is_written_ahead_and_dialled_at_its_route(journal):
    flow = request_to("api.test")
    server = connection.Server(address=("api.test", 80))  # no TLS name: judged by address
    connect = server_hooks.ServerConnectHook(server_hooks.ServerConnectionHookData(server, None))
    through_pipeline(
        journal,
        http_hooks.HttpRequestHeadersHook(flow),
        http_hooks.HttpRequestHook(flow),
        connect,
    )
    assert flow.response is None
    assert server.error is None and server.address == ("127.0.0.1", 9443)
    assert [(e["event"], e["decision"]) for e in journal.events()] == [("request", "allowed")]


def test_a_refused_relay_is_recorded_as_blocked_and_not_dialled(journal):
    flow = tflow.ttcpflow(messages=[])
    flow.server_conn.address, flow.server_conn.sni = ("evil.test", 22), None
    data = server_hooks.ServerConnectionHookData(flow.server_conn, flow.client_conn)
    through_pipeline(journal, tcp_hooks.TcpStartHook(flow), server_hooks.ServerConnectHook(data))
    assert (
        flow.server_conn.error == "agentlog: blocked evil.test:22 by policy (rule 'deny evil.test')"
    )
    assert flow.server_conn.address == ("evil.test", 22)  # not routed either
    assert journal.kinds() == ["tcp", "blocked"]
