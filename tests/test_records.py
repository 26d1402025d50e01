"""The journal's event shapes: key order is a contract, and the TypedDicts say it."""

from typing import get_type_hints

from agentlog import events, records
from agentlog.redact import Redactor

BASE = ["v", "event", "id", "seq", "session", "timestamp"]
UPSTREAM = ("10.0.0.1:4000", "192.0.2.1:443")


def built() -> dict[str, tuple[dict, type]]:
    """One event of each kind from its builder, and the TypedDict it claims to be."""
    r, common = Redactor(), {"id": "I", "session": "S", "ts": 1.0}
    request, _ = records.request_event(
        **common,
        method="GET",
        scheme="https",
        domain="d.test",
        port=443,
        path="/",
        http_version="HTTP/2.0",
        headers=[("a", "b")],
        client="127.0.0.1:1",
        agent_dst=None,
        mode="regular",
        decision="allowed",
        request_bytes=None,
        request_body_truncated=False,
        pcap_file=None,
        redactor=r,
    )
    return {
        "request": (request, events.RequestEvent),
        "response": (
            records.response_event(
                **common,
                status=200,
                reason="OK",
                http_version="HTTP/2.0",
                headers=[],
                response_bytes=1,
                response_body_truncated=False,
                ttfb_ms=1.0,
                duration_ms=2.0,
                upstream=UPSTREAM,
                redactor=r,
                known=set(),
            ),
            events.ResponseEvent,
        ),
        "error": (
            records.error_event(
                **common,
                error="reset",
                stage="response",
                response_bytes=3,
                upstream=UPSTREAM,
                redactor=r,
                known=set(),
            ),
            events.ErrorEvent,
        ),
        "blocked": (
            records.blocked_event(**common, domain="d", port=1, rule=None, reason="no"),
            events.BlockedEvent,
        ),
        "tls_failed": (
            records.tls_failed_event(
                **common, client="c", domain=None, port=None, error="e", redactor=r
            ),
            events.TlsFailedEvent,
        ),
        "websocket": (
            records.websocket_event(
                **common,
                messages_from_client=1,
                messages_from_server=2,
                bytes_from_client=3,
                bytes_from_server=4,
                close_code=1000,
                close_reason="",
                redactor=r,
            ),
            events.WebsocketEvent,
        ),
        "capture": (
            records.capture_event(**common, action="stop", reason="x", file=None, captured=1),
            events.CaptureEvent,
        ),
        "journal": (
            records.journal_event(**common, action="start", listening="l", recovered_torn_bytes=0),
            events.JournalEvent,
        ),
        "connection": (
            records.connection_event(
                **common,
                action="header_timeout",
                client="127.0.0.1",
                count=3,
                connections=3,
                limit=10.0,
                since=0.5,
            ),
            events.ConnectionEvent,
        ),
    }


def test_field_order_is_the_journal_contract():
    order = {kind: list(event) for kind, (event, _) in built().items()}
    assert order == {
        "request": BASE + ["method", "scheme", "domain", "port", "path", "http_version",
                           "headers", "client", "agent_dst", "mode", "decision", "request_bytes",
                           "request_body", "request_body_truncated", "pcap_file"],
        "response": BASE + ["status", "reason", "http_version", "headers", "response_bytes",
                            "response_body", "response_body_truncated", "ttfb_ms", "duration_ms",
                            "upstream_src", "upstream_dst"],
        "error": BASE + ["error", "stage", "response_bytes", "upstream_src", "upstream_dst"],
        "blocked": BASE + ["domain", "port", "rule", "reason"],
        "tls_failed": BASE + ["client", "domain", "port", "error"],
        "websocket": BASE + ["messages_from_client", "messages_from_server",
                             "bytes_from_client", "bytes_from_server", "close_code",
                             "close_reason"],
        "capture": BASE + ["action", "reason", "file", "captured"],
        "journal": BASE + ["action", "listening", "recovered_torn_bytes"],
        "connection": BASE + ["action", "client", "count", "connections", "limit", "since"],
    }  # fmt: skip
    assert list(records.streamed_request_body(5, False)) == [
        "request_bytes",
        "request_body",
        "request_body_truncated",
    ]


def test_each_event_is_what_its_typeddict_declares():
    for kind, (event, shape) in built().items():
        assert event["event"] == kind
        keys = set(event)
        assert shape.__required_keys__ <= keys, kind
        assert keys <= shape.__required_keys__ | shape.__optional_keys__, kind
        assert set(get_type_hints(shape)) >= keys
    for shape in (events.ResponseEvent, events.ErrorEvent):  # a streamed request's closing
        assert set(events.StreamedRequestBody.__annotations__) <= shape.__optional_keys__
