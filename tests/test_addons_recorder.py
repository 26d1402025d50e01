"""Recorder, hook by hook, on mitmproxy's test flows and a real journal.

Each test plays the hooks mitmproxy would call for one exchange and reads the
journal back as `agentlog show` would: what is on disk before the request may
go on, which body is kept, what the agent is answered when nothing can be
written, and how every exchange is closed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mitmproxy import connection, http
from mitmproxy import flow as mflow
from mitmproxy.options import Options
from mitmproxy.proxy import context
from mitmproxy.proxy.layers import http as http_hooks
from mitmproxy.proxy.layers import tls as tls_hooks
from mitmproxy.proxy.layers import websocket as ws_hooks
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow, tutils
from mitmproxy.tls import TlsData

from agentlog.policy import Policy
from agentlog.proxy.addons import Pipeline
from agentlog.proxy.addons.policy_gate import DECISION, forbidden
from agentlog.proxy.addons.recorder import FORWARD_WHOLE_UP_TO, Recorder, holds_request_body
from agentlog.redact import Redactor
from tests.addon_support import SESSION, Journal, addon_hooks, disk_full, stream

CAP = 16


@pytest.fixture
def journal(tmp_path) -> Iterator[Journal]:
    with Journal(tmp_path) as j:
        yield j


def recorder_for(journal: Journal, pcap_file=None) -> Recorder:
    return Recorder(journal.sink, Redactor(), body_cap=CAP, pcap_file=pcap_file)


def exchange(
    body: bytes = b"",
    *,
    host: str = "api.test",
    headers: dict[str, str] | None = None,
    http_version: str = "HTTP/1.1",
    length: bool = True,
) -> http.HTTPFlow:
    """A POST to https://host/v1 as the agent sent it, with its body complete."""
    fields = {"host": host, "content-type": "application/json"} | (headers or {})
    if length:
        fields["content-length"] = str(len(body))
    req = tutils.treq(
        host=host,
        port=443,
        scheme=b"https",
        method=b"POST",
        path=b"/v1?x=1",
        http_version=http_version.encode(),
        headers=http.Headers(**{k.replace("-", "_"): v for k, v in fields.items()}),
        content=body,
    )
    return tflow.tflow(req=req)


def answer(flow: http.HTTPFlow, body: bytes, *, length: bool = True, **headers: str) -> None:
    """The upstream's response arrives (its headers; the body as mitmproxy holds it)."""
    if length:
        headers["content_length"] = str(len(body))
    flow.response = tutils.tresp(
        content=body, headers=http.Headers(content_type="text/plain", **headers)
    )


HEADERS = http_hooks.HttpRequestHeadersHook
REQUEST = http_hooks.HttpRequestHook
RESPONSE_HEADERS = http_hooks.HttpResponseHeadersHook
RESPONSE = http_hooks.HttpResponseHook
ERROR = http_hooks.HttpErrorHook


# -- which request bodies are held ---------------------------------------------


@pytest.mark.parametrize(
    "headers, version, held",
    [
        ({"content-length": "16"}, "HTTP/1.1", True),  # fits the cap
        ({"content-length": "17"}, "HTTP/1.1", False),  # one byte over
        ({"content-length": "0x10"}, "HTTP/1.1", False),  # not a length we trust
        ({"transfer-encoding": "gzip, Chunked"}, "HTTP/1.1", False),
        ({}, "HTTP/1.1", True),  # HTTP/1 without either has no body
        ({}, "HTTP/2.0", False),  # HTTP/2 may carry one of any size, even a GET
        ({"content-length": "3"}, "HTTP/2.0", True),
    ],
)
def test_a_request_body_is_held_only_when_it_is_known_to_fit_the_cap(headers, version, held):
    req = tutils.treq(headers=http.Headers(**headers), http_version=version.encode())
    assert holds_request_body(req, CAP) is held


# -- the request, written ahead -----------------------------------------------


def test_a_held_request_is_on_disk_with_its_body_before_it_may_go_on(journal):
    files = {"127.0.0.1:22": "capture_20261128_000000.pcap"}  # the capture index, by client
    recorder = recorder_for(journal, pcap_file=lambda client, ts: files[client])
    flow = exchange(b'{"q": "hi"}')
    with addon_hooks(recorder) as run:
        run(HEADERS(flow))
        assert journal.on_disk() == []  # held until the body is complete
        run(REQUEST(flow))
        [request] = journal.on_disk()  # awaited: written before the hook returned
    assert flow.response is None and not flow.request.stream  # forwarded as mitmproxy would
    assert request["event"] == "request" and request["session"] == SESSION
    assert (request["method"], request["scheme"], request["domain"], request["port"]) == (
        "POST",
        "https",
        "api.test",
        443,
    )
    assert request["path"] == "/v1?x=1" and request["decision"] == "allowed"
    assert request["mode"] == "regular" and request["client"] == "127.0.0.1:22"
    assert request["pcap_file"] == "capture_20261128_000000.pcap"
    assert request["request_bytes"] == 11 and request["request_body_truncated"] is False
    assert journal.body(request["request_body"]) == b'{"q": "hi"}'


def test_a_request_too_big_to_hold_is_written_at_its_headers_and_its_body_streamed(journal):
    recorder = recorder_for(journal)
    body = b"0123456789abcdefXYZ"  # 19 bytes: over the cap of 16
    flow = exchange(body)
    with addon_hooks(recorder) as run:
        run(HEADERS(flow))
        [request] = journal.on_disk()  # before a byte of the body went anywhere
        assert request["request_bytes"] is None and request["request_body"] is None
        # mitmproxy passes each chunk through the stream callable on its way upstream
        assert stream(flow.request.stream, body[:10], body[10:]) == body
        run(REQUEST(flow))  # the body has ended: nothing more is written for it
        answer(flow, b"ok")
        run(RESPONSE_HEADERS(flow), RESPONSE(flow))
    [x] = journal.exchanges()
    # The closing event brings the streamed body's size; `show` lifts it into the request.
    assert x["response"]["request_bytes"] == x["request_bytes"] == 19
    assert x["request_body_truncated"] is True
    assert journal.body(x["request_body"]) == body[:CAP]
    assert journal.kinds() == ["request", "response"]


@pytest.mark.parametrize(
    "headers, version",
    [({"transfer-encoding": "chunked"}, "HTTP/1.1"), ({}, "HTTP/2.0")],
    ids=["chunked", "http2-no-length"],
)
def test_a_request_of_unknown_length_streams_and_is_accounted_for_when_it_fails(
    journal, headers, version
):
    recorder = recorder_for(journal)
    flow = exchange(b"", headers=headers, http_version=version, length=False)
    with addon_hooks(recorder) as run:
        run(HEADERS(flow))
        assert [e["event"] for e in journal.on_disk()] == ["request"]
        stream(flow.request.stream, b"abc", b"de")
        flow.error = mflow.Error("client disconnected")
        run(ERROR(flow))
    [x] = journal.exchanges()
    assert x["error"]["stage"] == "request" and x["error"]["error"] == "client disconnected"
    assert x["request_bytes"] == 5 and x["request_body_truncated"] is False
    assert journal.body(x["request_body"]) == b"abcde"


def test_the_request_event_has_the_transparent_destination_the_agent_dialled(journal):
    flow = exchange()
    flow.client_conn.proxy_mode = ProxyMode.parse("transparent")
    flow.server_conn.address = ("10.1.2.3", 443)
    with addon_hooks(recorder_for(journal)) as run:
        run(HEADERS(flow), REQUEST(flow))
    [request] = journal.events()
    assert request["mode"] == "transparent" and request["agent_dst"] == "10.1.2.3:443"


# -- refused because it could not be recorded ----------------------------------


def test_a_request_that_cannot_be_written_gets_a_503_and_the_journal_stays_whole(
    journal, monkeypatch
):
    recorder = recorder_for(journal)
    first, second = exchange(b"one"), exchange(b"two")
    with addon_hooks(recorder) as run:
        run(HEADERS(first), REQUEST(first))
        disk_full(monkeypatch, journal.logs.journal)
        run(HEADERS(second), REQUEST(second))
        assert second.response is not None and second.response.status_code == 503
        assert second.response.text == (
            "agentlog: request refused, it could not be recorded "
            "(journal write failed: No space left on device)\n"
        )
        assert second.response.headers["x-agentlog"] == "refused"
        # mitmproxy answers with our 503; the response hooks record nothing of it.
        run(RESPONSE_HEADERS(second), RESPONSE(second))
        monkeypatch.undo()  # space again: the agent hangs up, its request is still recorded
        second.error = mflow.Error("client disconnected")
        run(ERROR(second))
    assert journal.kinds() == ["request", "request", "error"]
    assert [e["id"] for e in journal.events()][1:] == [second.metadata["agentlog.state"].id] * 2


def test_a_streamed_request_that_cannot_be_written_is_not_streamed_anywhere(journal, monkeypatch):
    recorder = recorder_for(journal)
    flow = exchange(b"x" * 100)
    disk_full(monkeypatch, journal.logs.journal)
    with addon_hooks(recorder) as run:
        run(HEADERS(flow))
        assert flow.response is not None and flow.response.status_code == 503
        # mitmproxy opens the upstream connection only to stream a body; none is set up.
        assert not flow.request.stream
        monkeypatch.undo()
        # With a response set, mitmproxy reads the body, calls `request` and answers
        # the 503: the refused request is not recorded late as if it had gone on.
        run(REQUEST(flow), RESPONSE_HEADERS(flow), RESPONSE(flow))
    assert journal.kinds() == []


# -- refused by the policy ------------------------------------------------------


def blocked_exchange(body: bytes = b"") -> http.HTTPFlow:
    flow = exchange(body, host="evil.test")
    decision = Policy.parse([], ["evil.test"]).decide("evil.test", 443)
    flow.metadata[DECISION] = decision  # as PolicyGate leaves it, with its 403
    flow.response = forbidden("evil.test", 443, decision)
    return flow


def test_a_blocked_request_is_recorded_with_the_rule_and_its_403_is_not_recorded(journal):
    flow = blocked_exchange(b"{}")
    with addon_hooks(recorder_for(journal)) as run:
        run.cycle(flow)  # requestheaders, request, responseheaders, response
    [x] = journal.exchanges()
    assert x["decision"] == "blocked" and x["domain"] == "evil.test"
    assert x["blocked"]["rule"] == "deny evil.test"
    assert x["blocked"]["reason"] == "rule 'deny evil.test'"
    assert "response" not in x
    assert journal.kinds() == ["request", "blocked"]


def test_a_blocked_request_too_big_to_hold_is_not_streamed(journal):
    # mitmproxy refuses a response set together with a streamed request
    # (NotImplementedError): the 403 must go out with no stream set.
    flow = blocked_exchange(b"x" * 100)
    with addon_hooks(recorder_for(journal)) as run:
        run(HEADERS(flow))
    assert not flow.request.stream
    assert journal.kinds() == ["request", "blocked"]


def test_a_blocked_request_the_agent_abandons_is_closed_once(journal):
    # mitmproxy reads a blocked request's body before it answers the 403; a client
    # that hangs up meanwhile (or a request failing mitmproxy's validation after
    # `requestheaders`) also gets `error`. Its `blocked` event has closed it already.
    flow = blocked_exchange(b"x" * 100)
    with addon_hooks(recorder_for(journal)) as run:
        run(HEADERS(flow))
        flow.error = mflow.Error("client disconnected")
        run(ERROR(flow))
    assert journal.kinds() == ["request", "blocked"]


# -- responses ------------------------------------------------------------------


def test_a_small_response_of_known_length_is_forwarded_whole_and_kept_up_to_the_cap(journal):
    flow = exchange()
    body = b"a complete answer of 33 bytes ..."
    with addon_hooks(recorder_for(journal)) as run:
        run(HEADERS(flow), REQUEST(flow))
        answer(flow, body)
        run(RESPONSE_HEADERS(flow))
        assert not flow.response.stream  # mitmproxy reads it whole, then forwards it
        run(RESPONSE(flow))
    [x] = journal.exchanges()
    response = x["response"]
    assert (response["status"], response["reason"]) == (200, "OK")
    assert response["response_bytes"] == 33 and response["response_body_truncated"] is True
    assert journal.body(response["response_body"]) == body[:CAP]
    assert "request_bytes" not in response  # the held request had its own
    assert response["duration_ms"] is not None and response["ttfb_ms"] is not None


@pytest.mark.parametrize("length", [0, FORWARD_WHOLE_UP_TO])
def test_a_response_of_known_length_up_to_64KiB_is_not_streamed(journal, length):
    flow = exchange()
    with addon_hooks(recorder_for(journal)) as run:
        run(HEADERS(flow), REQUEST(flow))
        answer(flow, b"x" * length)
        run(RESPONSE_HEADERS(flow))
    assert not flow.response.stream


@pytest.mark.parametrize(
    "length",
    [FORWARD_WHOLE_UP_TO + 1, None],
    ids=["over-64KiB", "unknown-length"],
)
def test_any_other_response_streams_through_a_tee_that_keeps_the_first_bytes(journal, length):
    flow = exchange()
    chunks = [b"data: one\n\n", b"data: two\n\n", b"data: three\n\n"]
    with addon_hooks(recorder_for(journal)) as run:
        run(HEADERS(flow), REQUEST(flow))
        answer(flow, b"", length=False, **({} if length is None else {"content_length": "65537"}))
        run(RESPONSE_HEADERS(flow))
        assert stream(flow.response.stream, *chunks) == b"".join(chunks)  # untouched
        run(RESPONSE(flow))
    [x] = journal.exchanges()
    assert x["response"]["response_bytes"] == 35
    assert x["response"]["response_body_truncated"] is True
    assert journal.body(x["response"]["response_body"]) == b"".join(chunks)[:CAP]


def test_a_streamed_response_with_no_body_has_zero_bytes_and_no_body(journal):
    flow = exchange()
    with addon_hooks(recorder_for(journal)) as run:
        run(HEADERS(flow), REQUEST(flow))
        answer(flow, b"", length=False)
        run(RESPONSE_HEADERS(flow))
        stream(flow.response.stream)
        run(RESPONSE(flow))
    [x] = journal.exchanges()
    assert x["response"]["response_bytes"] == 0 and x["response"]["response_body"] is None


def test_secrets_the_request_carried_are_scrubbed_from_the_response_body(journal):
    flow = exchange(
        b'{"api_key": "k-77f1a0c3e9d24b58"}',
        headers={"authorization": "Bearer tok-5c0d1e2f3a4b5c6d"},
    )
    echoed = b"you sent k-77f1a0c3e9d24b58 with tok-5c0d1e2f3a4b5c6d; cookie c-9a8b7c6d5e4f3a2b"
    recorder = Recorder(journal.sink, Redactor(), body_cap=1024)
    with addon_hooks(recorder) as run:
        run(HEADERS(flow), REQUEST(flow))
        answer(flow, echoed, set_cookie="session=c-9a8b7c6d5e4f3a2b; Path=/")
        run(RESPONSE_HEADERS(flow), RESPONSE(flow))
    [x] = journal.exchanges()
    stored = journal.body(x["response"]["response_body"])
    assert stored is not None and stored.startswith(b"you sent ")
    for secret in (b"k-77f1a0c3e9d24b58", b"tok-5c0d1e2f3a4b5c6d", b"c-9a8b7c6d5e4f3a2b"):
        assert secret not in stored
    assert b"k-77f1a0c3e9d24b58" not in journal.body(x["request_body"])
    assert b"tok-5c0d" not in journal.logs.journal.read_bytes()


# -- errors ---------------------------------------------------------------------


def test_an_exchange_failing_before_its_held_request_was_written_is_recorded_whole(journal):
    flow = exchange(b"partial")
    with addon_hooks(recorder_for(journal)) as run:
        run(HEADERS(flow))  # held: nothing written yet
        flow.error = mflow.Error("client disconnected")
        run(ERROR(flow))
    [x] = journal.exchanges()
    assert x["decision"] == "allowed" and x["request_bytes"] is None
    assert x["error"]["stage"] == "request" and x["error"]["response_bytes"] is None


def test_an_upstream_failure_after_the_request_is_one_error_event(journal):
    flow = exchange(b"{}")
    with addon_hooks(recorder_for(journal)) as run:
        run(HEADERS(flow), REQUEST(flow))
        flow.error = mflow.Error("Connection refused")
        run(ERROR(flow))
    assert journal.kinds() == ["request", "error"]
    [x] = journal.exchanges()
    assert x["error"]["error"] == "Connection refused" and x["error"]["stage"] == "request"
    assert x["error"]["upstream_dst"] == "192.168.0.1:22"


def test_a_response_cut_off_midway_says_how_much_of_it_arrived(journal):
    flow = exchange()
    with addon_hooks(recorder_for(journal)) as run:
        run(HEADERS(flow), REQUEST(flow))
        answer(flow, b"", length=False)
        run(RESPONSE_HEADERS(flow))
        flow.response.stream(b"8 bytes.")
        flow.error = mflow.Error("peer closed connection")
        run(ERROR(flow))
    [x] = journal.exchanges()
    assert x["error"]["stage"] == "response" and x["error"]["response_bytes"] == 8
    assert "response" not in x


def test_hooks_for_a_flow_the_recorder_never_saw_write_nothing(journal):
    flow = tflow.tflow(resp=True, err=True)  # no requestheaders: e.g. loaded mid-flow
    with addon_hooks(recorder_for(journal)) as run:
        run(REQUEST(flow), RESPONSE_HEADERS(flow), RESPONSE(flow), ERROR(flow))
    assert journal.kinds() == []


# -- WebSocket ------------------------------------------------------------------


def test_websocket_messages_are_counted_and_dropped_as_they_pass(journal):
    # 2 messages from the client (22 bytes), 1 (7 bytes) back
    flow = tflow.twebsocketflow(close_code=1001, close_reason="going away")
    seen: list[int] = []

    class Spy:  # what a later addon in the chain would still find in the flow
        def websocket_message(self, f: http.HTTPFlow) -> None:
            seen.append(len(f.websocket.messages))

    with addon_hooks(Pipeline(recorder_for(journal), Spy())) as run:  # as app.py chains them
        run.cycle(flow)
    assert seen == [0, 0, 0]
    [x] = journal.exchanges()
    assert x["response"]["status"] == 101
    ws = x["websocket"]
    assert (ws["messages_from_client"], ws["bytes_from_client"]) == (2, 22)
    assert (ws["messages_from_server"], ws["bytes_from_server"]) == (1, 7)
    assert (ws["close_code"], ws["close_reason"]) == (1001, "going away")


def test_websocket_messages_of_an_unknown_flow_are_still_dropped(journal):
    flow = tflow.twebsocketflow()
    with addon_hooks(recorder_for(journal)) as run:
        run(ws_hooks.WebsocketMessageHook(flow), ws_hooks.WebsocketEndHook(flow))
    assert flow.websocket.messages == [] and journal.kinds() == []


# -- TLS ------------------------------------------------------------------------


def tls_failure(sni: str | None, server: tuple[str, int] | None, error: str | None) -> TlsData:
    client = tflow.tclient_conn()
    client.sni, client.error = sni, error
    ctx = context.Context(client, Options())
    ctx.server = connection.Server(address=server)
    return TlsData(client, ctx)


@pytest.mark.parametrize(
    "sni, server, error, expected",
    [
        (
            "bücher.test",
            ("10.0.0.1", 443),
            "certificate unknown",
            {"domain": "xn--bcher-kva.test", "domain_unicode": "bücher.test", "port": 443},
        ),
        (None, ("api.test", 8443), None, {"domain": "api.test", "port": 8443}),
        (None, None, None, {"domain": None, "port": None}),
    ],
    ids=["sni", "no-sni", "nothing-known"],
)
def test_a_client_refusing_our_certificate_is_recorded(journal, sni, server, error, expected):
    with addon_hooks(recorder_for(journal)) as run:
        run(tls_hooks.TlsFailedClientHook(tls_failure(sni, server, error)))
    [event] = journal.events()
    assert event["event"] == "tls_failed" and event["client"] == "127.0.0.1:22"
    assert event["error"] == (error or "TLS handshake failed")
    assert {k: event.get(k) for k in expected} == expected
