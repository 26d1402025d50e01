"""Journal events, built from plain values (pure; the proxy addons feed them).

Field names are the contract in docs/CONTRACT.md: add fields, never rename. `seq`,
`prev`, `mac` and body references are filled in by the journal writer; they
are set to None here so every event keeps one field order.
"""

from collections.abc import Iterable
from typing import NotRequired, TypedDict, cast

from agentlog.redact import Redactor
from agentlog.timefmt import rfc3339

VERSION = 1

# -- the events, one TypedDict per kind ------------------------------------------
# Key order at run time is the builders' (the journal's contract), not these
# classes'. `prev` and `mac` are added by the writer when it seals the line.


class EventBase(TypedDict):
    v: int
    event: str
    id: str
    seq: int | None  # assigned by the writer
    session: str
    timestamp: str  # RFC 3339, UTC
    prev: NotRequired[str]
    mac: NotRequired[str]


class RequestEvent(EventBase):
    method: str
    scheme: str
    domain: str  # canonical ASCII (an IDN as xn--...)
    domain_unicode: NotRequired[str]  # only where it differs from `domain`
    port: int
    path: str
    http_version: str
    headers: dict[str, str]
    client: str
    agent_dst: str | None
    mode: str
    decision: str  # "allowed" or "blocked"
    request_bytes: int | None  # None: streamed, given by the closing event
    request_body: str | None  # a body ref (bodies/xx/<sha256>), set by the writer
    request_body_truncated: bool
    pcap_file: str | None


class StreamedRequestBody(TypedDict):
    request_bytes: int
    request_body: str | None
    request_body_truncated: bool


class _StreamedRequest(TypedDict, total=False):
    """A closing event's extra fields when its request's body was streamed."""

    request_bytes: int
    request_body: str | None
    request_body_truncated: bool


class ResponseEvent(EventBase, _StreamedRequest):
    status: int
    reason: str
    http_version: str
    headers: dict[str, str]
    response_bytes: int
    response_body: str | None
    response_body_truncated: bool
    ttfb_ms: float | None
    duration_ms: float
    upstream_src: str | None
    upstream_dst: str | None
    # A streamed request body's size and ref (StreamedRequestBody):
    request_bytes: NotRequired[int]
    request_body: NotRequired[str | None]
    request_body_truncated: NotRequired[bool]


class ErrorEvent(EventBase, _StreamedRequest):
    error: str
    stage: str  # "request" or "response": whether a response had begun
    response_bytes: int | None
    upstream_src: str | None
    upstream_dst: str | None
    request_bytes: NotRequired[int]
    request_body: NotRequired[str | None]
    request_body_truncated: NotRequired[bool]


class BlockedEvent(EventBase):
    domain: str
    domain_unicode: NotRequired[str]
    port: int
    rule: str | None
    reason: str


class TlsFailedEvent(EventBase):
    client: str
    domain: str | None
    domain_unicode: NotRequired[str]
    port: int | None
    error: str


class WebsocketEvent(EventBase):
    messages_from_client: int
    messages_from_server: int
    bytes_from_client: int
    bytes_from_server: int
    close_code: int | None
    close_reason: str


class TcpEvent(EventBase):
    """A raw TCP relay's opening event, written before a byte is relayed."""

    domain: str
    domain_unicode: NotRequired[str]
    port: int
    client: str
    agent_dst: str | None
    mode: str
    tls: bool
    decision: str
    pcap_file: str | None


class TcpEndEvent(EventBase):
    ended: str  # closed by client, closed by server, error, proxy stopped
    error: str | None
    messages_from_client: int
    messages_from_server: int
    bytes_from_client: int
    bytes_from_server: int
    duration_ms: float
    upstream_src: str | None
    upstream_dst: str | None


class CaptureEvent(EventBase):
    action: str  # start, open, stop, restart
    interface: NotRequired[str]
    pid: NotRequired[int]
    file: NotRequired[str | None]
    reason: NotRequired[str]
    captured: NotRequired[int]  # tcpdump's counts at a stop
    received_by_filter: NotRequired[int]
    dropped_by_kernel: NotRequired[int]
    gap_started: NotRequired[str]
    gap_ended: NotRequired[str]


class JournalEvent(EventBase):
    action: str  # start, stop, recovered, keylog_failed, keylog_recovered
    listening: NotRequired[str]
    recovered_torn_bytes: NotRequired[int]
    # keys.log could not be written (keylog_failed), and then could (keylog_recovered):
    file: NotRequired[str]
    error: NotRequired[str]
    failed_since: NotRequired[str]
    lost_lines: NotRequired[int]
    # recovered: what was found wrong, what was moved aside, which seqs are skipped
    reason: NotRequired[str]
    moved_to: NotRequired[str | None]
    moved_bytes: NotRequired[int]
    moved_sha256: NotRequired[str | None]
    torn_seq: NotRequired[int | None]
    skipped_from: NotRequired[int | None]
    skipped_to: NotRequired[int | None]


class ConnectionEvent(EventBase):
    """What the proxy cut off or refused from one client address, counted over about a
    second (so a flood writes one line a second, not one per connection or stream)."""

    action: str  # refused, header_timeout, idle_timeout, streams_reset, reset_flood
    client: str  # the client's address, without a port: what the limits count by
    count: int  # connections (streams, for streams_reset) since the previous event
    connections: int  # distinct connections among them
    limit: float | None  # the limit that applied: seconds, connections or resets a second
    since: str  # RFC 3339: when the first one counted happened


class DnsEvent(EventBase):
    """One DNS query the agent sent and what it was answered."""

    domain: str | None  # the name asked, canonical ASCII (as given if it has no such form)
    domain_unicode: NotRequired[str]
    type: str | None  # "A", "AAAA", "HTTPS", "TYPE(99)"; None: not one question
    client: str
    transport: str  # "udp" or "tcp"
    decision: str  # "allowed" or "blocked"
    rule: str | None
    reason: str | None  # why it was blocked
    answered_by: str  # route, policy, resolver, upstream, agentlog (a malformed query)
    rcode: str | None  # NOERROR, NXDOMAIN, SERVFAIL, ...; None: never answered
    answers: list[str]  # "A 10.231.0.1", "CNAME example.net", ...
    error: str | None  # no answer, or the resolver's error


class BypassEvent(EventBase):
    """Packets the sandbox's firewall dropped for one flow since it was last reported."""

    protocol: str | None  # udp, icmp, ipv6-icmp, tcp, ...; None: dropped while the sets were full
    destination: str | None
    port: int | None  # None for protocols without ports
    packets: int
    bytes: int


Event = (
    RequestEvent
    | ResponseEvent
    | ErrorEvent
    | BlockedEvent
    | TlsFailedEvent
    | WebsocketEvent
    | TcpEvent
    | TcpEndEvent
    | CaptureEvent
    | JournalEvent
    | ConnectionEvent
    | DnsEvent
    | BypassEvent
)

# Events that close an exchange (a request's, or a TCP relay's).
ClosingEvent = ResponseEvent | ErrorEvent | BlockedEvent | WebsocketEvent | TcpEndEvent


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
