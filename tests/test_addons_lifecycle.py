"""Lifecycle at mitmproxy's `running`, with mitmproxy's own proxyserver addon
binding real listeners on loopback: the ports that came up, or why one did not."""

from __future__ import annotations

import socket

from mitmproxy import hooks
from mitmproxy.addons import next_layer, proxyserver

from agentlog.proxy.addons.lifecycle import Lifecycle, Listener
from tests.addon_support import addon_hooks


def running(*modes: str) -> tuple[list[list[Listener]], list[str]]:
    """Start mitmproxy's servers for `modes`, fire `running`: what Lifecycle reported."""
    listening: list[list[Listener]] = []
    failed: list[str] = []
    servers = proxyserver.Proxyserver()
    lifecycle = Lifecycle(listening.append, failed.append)
    with addon_hooks(lifecycle, servers, next_layer.NextLayer()) as run:
        run.tctx.configure(servers, mode=list(modes))
        run.complete(servers.setup_servers())
        try:
            run(hooks.RunningHook())
        finally:
            run.complete(servers.servers.update([]))  # close the listeners
    return listening, failed


def test_the_listeners_are_reported_with_the_ports_they_got():
    listening, failed = running("regular@127.0.0.1:0", "regular@127.0.0.2:0")
    assert failed == []
    [listeners] = listening
    assert [(x.mode, x.host) for x in listeners] == [
        ("regular", "127.0.0.1"),
        ("regular", "127.0.0.2"),
    ]
    assert all(x.port > 0 for x in listeners)  # the real port, not the 0 asked for
    assert str(listeners[0]) == f"127.0.0.1:{listeners[0].port} (regular)"


def test_a_listener_is_shown_as_the_ready_line_shows_it():
    assert str(Listener("transparent", "::1", 8081)) == "[::1]:8081 (transparent)"


def test_a_listener_that_could_not_bind_fails_the_start():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listening, failed = running("regular@127.0.0.1:0", f"regular@127.0.0.1:{port}")
    assert listening == []
    [reason] = failed  # one line, naming the listener and the OS's reason
    assert reason.startswith(f"cannot listen for regular mode (regular@127.0.0.1:{port}): ")
    assert "address already in use" in reason.lower() and "\n" not in reason
