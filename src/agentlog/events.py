"""The journal's events, one TypedDict per kind: what a line holds (docs/CONTRACT.md).

Field names are a contract: add fields, never rename. `records` builds these;
`journal.schema` reads them as the schema a line read back must fit.
"""

from typing import NotRequired, TypedDict

VERSION = 1

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
