"""TcpRecorder, hook by hook, on mitmproxy's test flows and layers and a real journal.

A relay is one exchange: a `tcp` event on disk before anything is dialled,
and exactly one closing event (`tcp_end` with the counts, or `blocked`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from mitmproxy import connection, http, tcp
from mitmproxy import flow as mflow
from mitmproxy.connection import ConnectionState
from mitmproxy.options import Options
from mitmproxy.proxy import commands, context, events, layer, server_hooks
from mitmproxy.proxy.layers import TCPLayer
from mitmproxy.proxy.layers import http as http_hooks
from mitmproxy.proxy.layers import tcp as tcp_hooks
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow, tutils

from agentlog.policy import Policy
from agentlog.proxy.addons.policy_gate import DECISION
from agentlog.proxy.addons.tcp_recorder import CloseWatchingTcpLayer, TcpRecorder
from agentlog.redact import Redactor
from tests.addon_support import Hooks, Journal, addon_hooks, disk_full


@pytest.fixture
def journal(tmp_path) -> Iterator[Journal]:
    with Journal(tmp_path) as j:
        yield j


def relay_flow(host: str = "echo.test", port: int = 22, sni: str | None = None) -> tcp.TCPFlow:
    """A relay mitmproxy is about to dial, with no message yet."""
    flow = tflow.ttcpflow(messages=[])
    flow.server_conn.address, flow.server_conn.sni = (host, port), sni
    return flow


def message(flow: tcp.TCPFlow, from_client: bool, content: bytes) -> tcp_hooks.TcpMessageHook:
    """A message arrives: mitmproxy appends it to the flow, then calls the hook."""
    flow.messages.append(tcp.TCPMessage(from_client, content))
    return tcp_hooks.TcpMessageHook(flow)


def connect_flow(host: str = "echo.test", port: int = 22) -> http.HTTPFlow:
    req = tutils.treq(method=b"CONNECT", host=host, port=port, scheme=b"", path=b"")
    return tflow.tflow(req=req)


def refused(flow: mflow.Flow, host: str) -> None:
    flow.metadata[DECISION] = Policy.parse([], [host]).decide(host, 22)  # as PolicyGate does


def closing(journal: Journal) -> dict:
    [x] = journal.exchanges()
    return x["tcp_end"]


# -- the relay's life -----------------------------------------------------------


def test_a_relay_is_written_ahead_counted_and_closed_once(journal):
    flow = relay_flow(sni="named.test")
    recorder = TcpRecorder(
        journal.sink, Redactor(), pcap_file=lambda client, ts: "capture_20261128_000000.pcap"
    )
    with addon_hooks(recorder) as run:
        run(tcp_hooks.TcpStartHook(flow))
        [opened] = journal.on_disk()  # before mitmproxy dials
        run(message(flow, True, b"SSH-2.0-x\r\n"))
        run(message(flow, False, b"SSH-2.0-server\r\n"))
        run(message(flow, True, b"12345"))
        assert flow.messages == []  # dropped as they pass: nothing piles up
        run(tcp_hooks.TcpEndHook(flow), tcp_hooks.TcpEndHook(flow))
        recorder.done()  # the proxy stops afterwards: nothing left open
    assert opened["event"] == "tcp" and opened["decision"] == "allowed"
    assert (opened["domain"], opened["port"]) == ("named.test", 22)  # the TLS name it asked for
    assert opened["client"] == "127.0.0.1:22" and opened["mode"] == "regular"
    assert opened["tls"] is False and opened["pcap_file"] == "capture_20261128_000000.pcap"
    end = closing(journal)
    assert (end["messages_from_client"], end["bytes_from_client"]) == (2, 16)
    assert (end["messages_from_server"], end["bytes_from_server"]) == (1, 16)
    assert end["ended"] == "closed" and end["error"] is None
    assert (end["upstream_src"], end["upstream_dst"]) == ("address:22", "192.168.0.1:22")
    assert journal.kinds() == ["tcp", "tcp_end"]


def test_a_relay_in_transparent_mode_names_the_destination_the_agent_dialled(journal):
    flow = relay_flow(host="10.9.8.7", port=2222)
    flow.client_conn.proxy_mode = ProxyMode.parse("transparent")
    flow.client_conn.tls = True
    with addon_hooks(TcpRecorder(journal.sink, Redactor())) as run:
        run(tcp_hooks.TcpStartHook(flow))
    [opened] = journal.events()
    assert opened["mode"] == "transparent" and opened["agent_dst"] == "10.9.8.7:2222"
    assert opened["tls"] is True


def test_a_relay_that_fails_says_why(journal):
    flow = relay_flow()
    with addon_hooks(TcpRecorder(journal.sink, Redactor())) as run:
        run(tcp_hooks.TcpStartHook(flow))
        flow.error = mflow.Error("Connection reset by peer")
        run(tcp_hooks.TcpErrorHook(flow))
    end = closing(journal)
    assert end["ended"] == "error" and end["error"] == "Connection reset by peer"


def test_relays_still_open_when_the_proxy_stops_are_closed_as_proxy_stopped(journal):
    open_one, closed_one = relay_flow(), relay_flow(host="other.test")
    recorder = TcpRecorder(journal.sink, Redactor())
    with addon_hooks(recorder) as run:
        run(tcp_hooks.TcpStartHook(open_one), tcp_hooks.TcpStartHook(closed_one))
        run(message(open_one, True, b"abc"))
        run(tcp_hooks.TcpEndHook(closed_one))
        recorder.done()
    ends = [x["tcp_end"] for x in journal.exchanges()]
    assert [(e["ended"], e["bytes_from_client"]) for e in ends] == [
        ("proxy stopped", 3),
        ("closed", 0),
    ]
    assert journal.kinds() == ["tcp", "tcp", "tcp_end", "tcp_end"]


# -- which side closed first: mitmproxy's layer, watched ------------------------


def play(run: Hooks, relay: layer.Layer, *feed: events.Event) -> list[commands.Command]:
    """Feed events to a layer as mitmproxy's connection handler does: every hook it
    starts goes through our addon and is answered; the other commands are returned."""
    done: list[commands.Command] = []
    pending = list(feed)
    while pending:
        for command in relay.handle_event(pending.pop(0)):
            if isinstance(command, commands.StartHook):
                run(command)
                pending.insert(0, events.HookCompleted(command))
            else:
                done.append(command)
    return done


def relay_context() -> context.Context:
    ctx = context.Context(tflow.tclient_conn(), Options())
    ctx.server = connection.Server(address=("echo.test", 22), timestamp_start=time.time())
    ctx.server.state = ConnectionState.OPEN  # connected: the layer relays at once
    return ctx


@pytest.mark.parametrize("first", ["client", "server"])
def test_the_side_that_closed_first_is_recorded(journal, first):
    ctx = relay_context()
    relay = CloseWatchingTcpLayer(ctx)
    conns = {"client": ctx.client, "server": ctx.server}
    second = "server" if first == "client" else "client"
    with addon_hooks(TcpRecorder(journal.sink, Redactor())) as run:
        sent = play(run, relay, events.Start(), events.DataReceived(ctx.client, b"ping"))
        assert [(type(c), c.data) for c in sent] == [(commands.SendData, b"ping")]  # relayed
        for side in (first, second):
            conns[side].state = ConnectionState.CAN_WRITE  # mitmproxy marks it, then tells
            play(run, relay, events.ConnectionClosed(conns[side]))
    end = closing(journal)
    assert end["ended"] == f"closed by {first}"
    assert (end["messages_from_client"], end["bytes_from_client"]) == (1, 4)


# -- refused relays and failed write-ahead ----------------------------------------


def test_a_refused_relay_is_closed_by_its_blocked_event_alone(journal):
    flow = relay_flow(host="evil.test")
    refused(flow, "evil.test")
    recorder = TcpRecorder(journal.sink, Redactor())
    with addon_hooks(recorder) as run:
        run(tcp_hooks.TcpStartHook(flow))
        flow.error = mflow.Error("agentlog: blocked evil.test:22 by policy")  # the dial refused
        run(tcp_hooks.TcpErrorHook(flow))
        recorder.done()
    [x] = journal.exchanges()
    assert x["event"] == "tcp" and x["decision"] == "blocked"
    assert (x["blocked"]["domain"], x["blocked"]["rule"]) == ("evil.test", "deny evil.test")
    assert "tcp_end" not in x
    assert journal.kinds() == ["tcp", "blocked"]


def test_a_relay_that_cannot_be_written_is_never_dialled(journal, monkeypatch):
    earlier, flow = relay_flow(host="first.test"), relay_flow()
    recorder = TcpRecorder(journal.sink, Redactor())
    with addon_hooks(recorder) as run:
        run(tcp_hooks.TcpStartHook(earlier))
        disk_full(monkeypatch, journal.logs.journal)
        run(tcp_hooks.TcpStartHook(flow))
        # Setting server.error before mitmproxy connects is what stops the dial.
        assert flow.server_conn.error == (
            "agentlog: relay refused, it could not be recorded "
            "(journal write failed: No space left on device)"
        )
        monkeypatch.undo()
        flow.error = mflow.Error("connection refused")
        run(tcp_hooks.TcpErrorHook(flow))
        recorder.done()
    # The relay that was recorded is closed at stop; the refused one left no trace.
    assert [x["domain"] for x in journal.exchanges()] == ["first.test"]
    assert journal.kinds() == ["tcp", "tcp_end"]


def test_a_relay_whose_write_fails_as_the_proxy_stops_is_still_refused(journal, monkeypatch):
    flow = relay_flow()
    recorder = TcpRecorder(journal.sink, Redactor())
    disk_full(monkeypatch, journal.logs.journal)

    async def stop_while_writing() -> None:
        writing = asyncio.ensure_future(recorder.tcp_start(flow))
        await asyncio.sleep(0)  # the hook now awaits its write-ahead
        recorder.done()  # the proxy stops meanwhile: the relay is closed
        await writing

    with addon_hooks(recorder) as run:
        run.complete(stop_while_writing())
    assert flow.server_conn.error is not None
    assert flow.server_conn.error.startswith("agentlog: relay refused")


# -- CONNECT tunnels ------------------------------------------------------------


def test_a_refused_connect_is_a_blocked_relay(journal):
    flow = connect_flow(host="evil.test")
    refused(flow, "evil.test")
    with addon_hooks(TcpRecorder(journal.sink, Redactor())) as run:
        run(http_hooks.HttpConnectHook(flow))
    [x] = journal.exchanges()
    assert (x["event"], x["decision"], x["domain"]) == ("tcp", "blocked", "evil.test")
    assert x["blocked"]["reason"] == "rule 'deny evil.test'"


def test_a_connect_closed_before_a_byte_is_an_empty_relay(journal):
    flow = connect_flow()
    recorder = TcpRecorder(journal.sink, Redactor())
    with addon_hooks(recorder) as run:
        run(http_hooks.HttpConnectHook(flow))
        assert journal.on_disk() == []  # nothing yet: it may still carry something
        run(server_hooks.ClientDisconnectedHook(flow.client_conn))
        run(server_hooks.ClientDisconnectedHook(flow.client_conn))  # once only
        recorder.done()
    [x] = journal.exchanges()
    assert (x["domain"], x["port"], x["decision"]) == ("echo.test", 22, "allowed")
    end = x["tcp_end"]
    assert end["ended"] == "closed by client" and end["bytes_from_client"] == 0
    assert (end["upstream_src"], end["upstream_dst"]) == (None, None)  # nothing dialled


def test_a_connect_still_empty_when_the_proxy_stops_is_closed_as_proxy_stopped(journal):
    recorder = TcpRecorder(journal.sink, Redactor())
    with addon_hooks(recorder) as run:
        flow = connect_flow()
        run(http_hooks.HttpConnectHook(flow))
        recorder.done()
        run(server_hooks.ClientDisconnectedHook(flow.client_conn))  # cut at shutdown
    assert closing(journal)["ended"] == "proxy stopped"
    assert journal.kinds() == ["tcp", "tcp_end"]


def next_layer_for(flow: http.HTTPFlow, chosen: type[layer.Layer] | None, **kw) -> layer.NextLayer:
    ctx = context.Context(flow.client_conn, Options())
    decision = layer.NextLayer(ctx)
    decision.layer = chosen(ctx, **kw) if chosen else None  # as mitmproxy's NextLayer addon
    return decision


def test_a_tunnel_that_carries_a_relay_gets_the_close_watching_layer(journal):
    flow = connect_flow()
    decision = next_layer_for(flow, TCPLayer)
    with addon_hooks(TcpRecorder(journal.sink, Redactor())) as run:
        run(http_hooks.HttpConnectHook(flow), layer.NextLayerHook(decision))
        run(server_hooks.ClientDisconnectedHook(flow.client_conn))  # the relay records it
    assert type(decision.layer) is CloseWatchingTcpLayer
    assert decision.context.layers == [decision.layer]  # mitmproxy's own was taken out
    assert journal.kinds() == []


@pytest.mark.parametrize(
    "chosen, kw",
    [(TCPLayer, {"ignore": True}), (layer.NextLayer, {})],
    ids=["ignored-tcp", "not-tcp"],
)
def test_other_layers_are_left_alone_and_forget_the_tunnel(journal, chosen, kw):
    flow = connect_flow()
    decision = next_layer_for(flow, chosen, **kw)
    mine = decision.layer
    with addon_hooks(TcpRecorder(journal.sink, Redactor())) as run:
        run(http_hooks.HttpConnectHook(flow), layer.NextLayerHook(decision))
        run(server_hooks.ClientDisconnectedHook(flow.client_conn))
    assert decision.layer is mine
    assert journal.kinds() == []  # whatever it carries records itself


def test_a_tunnel_whose_layer_is_not_chosen_yet_is_still_remembered(journal):
    flow = connect_flow()
    with addon_hooks(TcpRecorder(journal.sink, Redactor())) as run:
        run(http_hooks.HttpConnectHook(flow), layer.NextLayerHook(next_layer_for(flow, None)))
        run(server_hooks.ClientDisconnectedHook(flow.client_conn))
    assert closing(journal)["ended"] == "closed by client"
