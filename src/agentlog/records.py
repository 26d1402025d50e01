"""Journal events, built from plain values (pure; the proxy addons feed them).

Field names are the contract in docs/CONTRACT.md: add fields, never rename. `seq`,
`prev`, `mac` and body references are filled in by the journal writer; they
are set to None here so every event keeps one field order.
"""

from collections.abc import Iterable
from typing import TypedDict, cast

from agentlog.events import (
    VERSION,
    BlockedEvent,
    BypassEvent,
    CaptureEvent,
    ConnectionEvent,
    DnsEvent,
    ErrorEvent,
    EventBase,
    JournalEvent,
    RequestEvent,
    ResponseEvent,
    StreamedRequestBody,
    TcpEndEvent,
    TcpEvent,
    TlsFailedEvent,
    WebsocketEvent,
)
from agentlog.redact import Redactor
from agentlog.timefmt import rfc3339

# -- the builders ------------------------------------------------------------------


def _base(event: str, id: str, session: str, ts: float) -> EventBase:
    return {
        "v": VERSION,
        "event": event,
        "id": id,
        "seq": None,
        "session": session,
        "timestamp": rfc3339(ts),
    }


class _DomainUnicode(TypedDict, total=False):
    domain_unicode: str


def _unicode(domain_unicode: str | None) -> _DomainUnicode:
    """`domain` is the ASCII host that was dialled (`xn--...` for an IDN, so a
    homograph never reads like the name it imitates); its Unicode form goes
    beside it, only where the two differ."""
    return {} if domain_unicode is None else {"domain_unicode": domain_unicode}


def request_event(
    *,
    id: str,
    session: str,
    ts: float,
    method: str,
    scheme: str,
    domain: str,
    domain_unicode: str | None = None,
    port: int,
    path: str,
    http_version: str,
    headers: Iterable[tuple[str, str]],
    client: str,
    agent_dst: str | None,
    mode: str,
    decision: str,
    request_bytes: int | None,
    request_body_truncated: bool,
    pcap_file: str | None,
    redactor: Redactor,
) -> tuple[RequestEvent, set[str]]:
    """The write-ahead event; also returns the secrets it redacted, to scrub elsewhere."""
    clean_headers, secrets = redactor.headers(headers)
    clean_path, path_secrets = redactor.path(path, secrets)
    secrets |= path_secrets
    event: RequestEvent = {
        **_base("request", id, session, ts),
        "method": method,
        "scheme": scheme,
        "domain": domain,
        **_unicode(domain_unicode),
        "port": port,
        "path": clean_path,
        "http_version": http_version,
        "headers": clean_headers,
        "client": client,
        "agent_dst": agent_dst,
        "mode": mode,
        "decision": decision,
        "request_bytes": request_bytes,
        "request_body": None,
        "request_body_truncated": request_body_truncated,
        "pcap_file": pcap_file,
    }
    return event, secrets


def response_event(
    *,
    id: str,
    session: str,
    ts: float,
    status: int,
    reason: str,
    http_version: str,
    headers: Iterable[tuple[str, str]],
    response_bytes: int,
    response_body_truncated: bool,
    ttfb_ms: float | None,
    duration_ms: float,
    upstream: tuple[str | None, str | None],
    redactor: Redactor,
    known: set[str],
) -> ResponseEvent:
    """The response event; adds the secrets its headers held (Set-Cookie,
    X-Auth-Token, a Location's ?code=) to `known`, to scrub them from the body."""
    clean_headers, found = redactor.headers(headers, known)
    known |= found
    return {
        **_base("response", id, session, ts),
        "status": status,
        "reason": redactor.scrub(reason, known),
        "http_version": http_version,
        "headers": clean_headers,
        "response_bytes": response_bytes,
        "response_body": None,
        "response_body_truncated": response_body_truncated,
        "ttfb_ms": ttfb_ms,
        "duration_ms": duration_ms,
        "upstream_src": upstream[0],
        "upstream_dst": upstream[1],
    }


def streamed_request_body(request_bytes: int, truncated: bool) -> StreamedRequestBody:
    """Extra fields for the closing event of a request whose body was streamed:
    its size was not known when the write-ahead request event was written."""
    return {
        "request_bytes": request_bytes,
        "request_body": None,
        "request_body_truncated": truncated,
    }


def error_event(
    *,
    id: str,
    session: str,
    ts: float,
    error: str,
    stage: str,
    response_bytes: int | None,
    upstream: tuple[str | None, str | None],
    redactor: Redactor,
    known: set[str],
) -> ErrorEvent:
    return {
        **_base("error", id, session, ts),
        "error": redactor.scrub(error, known),
        "stage": stage,
        "response_bytes": response_bytes,
        "upstream_src": upstream[0],
        "upstream_dst": upstream[1],
    }


def blocked_event(
    *,
    id: str,
    session: str,
    ts: float,
    domain: str,
    domain_unicode: str | None = None,
    port: int,
    rule: str | None,
    reason: str,
) -> BlockedEvent:
    return {
        **_base("blocked", id, session, ts),
        "domain": domain,
        **_unicode(domain_unicode),
        "port": port,
        "rule": rule,
        "reason": reason,
    }


def tls_failed_event(
    *,
    id: str,
    session: str,
    ts: float,
    client: str,
    domain: str | None,
    domain_unicode: str | None = None,
    port: int | None,
    error: str,
    redactor: Redactor,
) -> TlsFailedEvent:
    return {
        **_base("tls_failed", id, session, ts),
        "client": client,
        "domain": domain,
        **_unicode(domain_unicode),
        "port": port,
        "error": redactor.scrub(error),
    }


def websocket_event(
    *,
    id: str,
    session: str,
    ts: float,
    messages_from_client: int,
    messages_from_server: int,
    bytes_from_client: int,
    bytes_from_server: int,
    close_code: int | None,
    close_reason: str,
    redactor: Redactor,
) -> WebsocketEvent:
    return {
        **_base("websocket", id, session, ts),
        "messages_from_client": messages_from_client,
        "messages_from_server": messages_from_server,
        "bytes_from_client": bytes_from_client,
        "bytes_from_server": bytes_from_server,
        "close_code": close_code,
        "close_reason": redactor.scrub(close_reason),
    }


def tcp_event(
    *,
    id: str,
    session: str,
    ts: float,
    domain: str,
    domain_unicode: str | None = None,
    port: int,
    client: str,
    agent_dst: str | None,
    mode: str,
    tls: bool,
    decision: str,
    pcap_file: str | None,
) -> TcpEvent:
    """A TCP relay's opening event, its `request`: written before a byte is relayed."""
    return {
        **_base("tcp", id, session, ts),
        "domain": domain,
        **_unicode(domain_unicode),
        "port": port,
        "client": client,
        "agent_dst": agent_dst,
        "mode": mode,
        "tls": tls,
        "decision": decision,
        "pcap_file": pcap_file,
    }


def tcp_end_event(
    *,
    id: str,
    session: str,
    ts: float,
    ended: str,
    error: str | None,
    messages_from_client: int,
    messages_from_server: int,
    bytes_from_client: int,
    bytes_from_server: int,
    duration_ms: float,
    upstream: tuple[str | None, str | None],
    redactor: Redactor,
) -> TcpEndEvent:
    """A TCP relay's closing event. `ended`: closed by client, closed by server,
    error (then `error` says what), or proxy stopped."""
    return {
        **_base("tcp_end", id, session, ts),
        "ended": ended,
        "error": None if error is None else redactor.scrub(error),
        "messages_from_client": messages_from_client,
        "messages_from_server": messages_from_server,
        "bytes_from_client": bytes_from_client,
        "bytes_from_server": bytes_from_server,
        "duration_ms": duration_ms,
        "upstream_src": upstream[0],
        "upstream_dst": upstream[1],
    }


def capture_event(
    *, id: str, session: str, ts: float, action: str, **fields: object
) -> CaptureEvent:
    """tcpdump's life: start, open (a new file), stop, restart (after a gap)."""
    # `fields` are CaptureEvent's optional ones; tcpdump's counts come as a dict.
    return cast(CaptureEvent, {**_base("capture", id, session, ts), "action": action, **fields})


def journal_event(
    *, id: str, session: str, ts: float, action: str, **fields: object
) -> JournalEvent:
    """The proxy's own life: start, stop, recovery of a torn tail or a cut journal."""
    return cast(JournalEvent, {**_base("journal", id, session, ts), "action": action, **fields})


def connection_event(
    *,
    id: str,
    session: str,
    ts: float,
    action: str,
    client: str,
    count: int,
    connections: int,
    limit: float | None,
    since: float,
) -> ConnectionEvent:
    """Connections (or streams) from `client` cut off or refused since `since`."""
    return {
        **_base("connection", id, session, ts),
        "action": action,
        "client": client,
        "count": count,
        "connections": connections,
        "limit": limit,
        "since": rfc3339(since),
    }


def dns_event(
    *,
    id: str,
    session: str,
    ts: float,
    domain: str | None,
    domain_unicode: str | None = None,
    type: str | None,
    client: str,
    transport: str,
    decision: str,
    rule: str | None,
    reason: str | None,
    answered_by: str,
    rcode: str | None,
    answers: list[str],
    error: str | None,
) -> DnsEvent:
    """A DNS query and its answer (or why it has none), written as it is answered."""
    return {
        **_base("dns", id, session, ts),
        "domain": domain,
        **_unicode(domain_unicode),
        "type": type,
        "client": client,
        "transport": transport,
        "decision": decision,
        "rule": rule,
        "reason": reason,
        "answered_by": answered_by,
        "rcode": rcode,
        "answers": answers,
        "error": error,
    }


def bypass_event(
    *,
    id: str,
    session: str,
    ts: float,
    protocol: str | None,
    destination: str | None,
    port: int | None,
    packets: int,
    bytes: int,
) -> BypassEvent:
    """A flow the firewall dropped: the agent tried to go around agentlog."""
    return {
        **_base("bypass", id, session, ts),
        "protocol": protocol,
        "destination": destination,
        "port": port,
        "packets": packets,
        "bytes": bytes,
    }
