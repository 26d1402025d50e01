"""DNS: every query the agent sends is judged, answered and recorded as a `dns` event.

The DNS listener (`--dns HOST:PORT`, mitmproxy's dns mode, UDP and TCP) hands
each query to DnsGate first, before mitmproxy's own resolver:

- a name the policy refuses gets NXDOMAIN, and is never looked up;
- a name with a `--route` is answered here with the route's address, so no
  resolver is asked; a route to loopback (which, seen from a sandbox, would be
  the agent's own) is answered with the address the query came to, agentlog's,
  where every connection of the agent ends anyway;
- a malformed query (not one question, not a QUERY, not class IN) is refused;
- anything else goes to mitmproxy's resolver: A and AAAA through the system
  resolver, other types forwarded to the system's name server.

DnsRecorder writes one `dns` event per query once it is answered, or when it
never will be (the agent hung up, the resolver failed, the proxy stopped).

mitmproxy decodes names with Python's IDNA 2003 codec, and a name that does
not decode (invalid punycode) crashes its connection handler; a datagram it
cannot parse at all is dropped unanswered and unseen. LenientDNSLayer makes
any datagram with a whole header that does not parse a query with no
question instead, which the gate refuses (FORMERR) and the recorder records.
"""

from __future__ import annotations

import ipaddress
import struct
import time
from dataclasses import dataclass, replace

from mitmproxy import connection, dns
from mitmproxy.net.dns import classes, op_codes, response_codes, types
from mitmproxy.proxy import mode_servers
from mitmproxy.proxy.layers.dns import DNSLayer

from agentlog import records
from agentlog.hosts import HostError, canonical_host, host_forms, ip_address, reached_by
from agentlog.ids import new_id
from agentlog.journal.sink import EventSink
from agentlog.policy import Decision, Policy
from agentlog.proxy.addons import legs

QUERY = "agentlog.dns"
TTL = 60  # seconds a local answer may be cached
Routes = dict[str, tuple[str, int]]


@dataclass(slots=True)
class Query:
    """What the gate decided about one query, for the recorder."""

    id: str
    name: str | None
    type: str | None
    decision: Decision
    answered_by: str
    recorded: bool = False


@dataclass(frozen=True)
class LocalAnswer:
    """A query answered by agentlog itself: an rcode and the addresses (for NOERROR)."""

    rcode: int
    addresses: tuple[str, ...] = ()
    answered_by: str = "policy"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    answer: LocalAnswer | None  # None: let the resolver answer
    name: str | None = None  # canonical, or as given when it has no canonical form
    type: str | None = None


def decide_name(policy: Policy, name: str) -> Decision:
    """Judge a name looked up for any port (pure): only a deny rule for every port
    refuses it, and any allow rule naming it, on whatever port, lets it resolve."""
    try:
        canonical = canonical_host(name)
    except HostError as e:
        return Decision(False, None, f"not a valid host: {e}")
    for alias in reached_by(canonical):
        for rule in policy.rules:
            if rule.kind == "deny" and rule.port is None and rule.matches(alias, 0):
                return Decision(False, rule)
    allows = [r for r in policy.rules if r.kind == "allow"]
    for rule in allows:
        if replace(rule, port=None).matches(canonical, 0):
            return Decision(True, rule)
    return Decision(not allows, None)


def _address(host: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ip_address(canonical_host(host)) if host else None
    except HostError:
        return None


def _routed_addresses(target: str, qtype: int, local: str | None) -> tuple[str, ...]:
    """The addresses a routed name is answered with, for an A or AAAA question."""
    address = _address(target)
    if address is None or address.is_loopback or address.is_unspecified:
        address = _address(local)  # the agent reaches the route through agentlog
        if address is None or address.is_unspecified:
            return ()
    wanted = ipaddress.IPv4Address if qtype == types.A else ipaddress.IPv6Address
    return (str(address),) if isinstance(address, wanted) else ()


def judge(message: dns.DNSMessage, policy: Policy, routes: Routes, local: str | None) -> Verdict:
    """What to do with one query (pure): refuse it, answer it here, or resolve it."""
    question = message.question
    if question is None:
        malformed = LocalAnswer(response_codes.FORMERR, (), "agentlog")
        return Verdict(Decision(False, None, "not one decodable question"), malformed)
    qtype = types.to_str(question.type)
    name, _ = host_forms(question.name)
    if message.op_code != op_codes.QUERY or question.class_ != classes.IN:
        reason = "not a standard query of class IN"
        refused = LocalAnswer(response_codes.NOTIMP, (), "agentlog")
        return Verdict(Decision(False, None, reason), refused, name, qtype)
    decision = decide_name(policy, question.name)
    if not decision.allowed:
        return Verdict(decision, LocalAnswer(response_codes.NXDOMAIN), name, qtype)
    route = routes.get(name)
    if route is not None:
        addresses: tuple[str, ...] = ()
        if question.type in (types.A, types.AAAA):
            addresses = _routed_addresses(route[0], question.type, local)
        routed = LocalAnswer(response_codes.NOERROR, addresses, "route")
        return Verdict(decision, routed, name, qtype)
    return Verdict(decision, None, name, qtype)


def local_response(message: dns.DNSMessage, answer: LocalAnswer) -> dns.DNSMessage:
    if answer.rcode != response_codes.NOERROR:
        return message.fail(answer.rcode)
    assert message.question is not None
    name = message.question.name
    records_ = []
    for text in answer.addresses:
        address = ipaddress.ip_address(text)
        make = dns.ResourceRecord.A if address.version == 4 else dns.ResourceRecord.AAAA
        records_.append(make(name, address, ttl=TTL))  # type: ignore[arg-type]
    return message.succeed(records_)


class DnsGate:
    """`dns_request`, before mitmproxy's resolver: refuse, answer locally, or let it resolve."""

    def __init__(self, policy: Policy, routes: Routes) -> None:
        self.policy = policy
        self.routes = routes

    def dns_request(self, flow: dns.DNSFlow) -> None:
        local = flow.client_conn.sockname[0] if flow.client_conn.sockname else None
        verdict = judge(flow.request, self.policy, self.routes, local)
        answer = verdict.answer
        if answer is not None:
            by = answer.answered_by
            flow.response = local_response(flow.request, answer)
        elif verdict.type in ("A", "AAAA"):
            by = "resolver"
        else:
            by = "upstream"
        flow.metadata[QUERY] = Query(
            new_id(flow.request.timestamp or time.time()),
            verdict.name,
            verdict.type,
            verdict.decision,
            by,
        )


def _answers(message: dns.DNSMessage | None) -> list[str]:
    if message is None:
        return []
    found = []
    for rr in message.answers:
        try:
            data = str(rr)
        except Exception:  # a record mitmproxy cannot show: its bytes
            data = rr.data.hex()
        found.append(f"{types.to_str(rr.type)} {data}")
    return found


class DnsRecorder:
    """One `dns` event per query: at its answer, its error, or when it is abandoned."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self._pending: dict[str, dict[int, dns.DNSFlow]] = {}  # client id -> unanswered

    def dns_request(self, flow: dns.DNSFlow) -> None:
        if flow.response is None and flow.error is None:
            self._pending.setdefault(flow.client_conn.id, {})[id(flow)] = flow

    def dns_response(self, flow: dns.DNSFlow) -> None:
        response = flow.response
        rcode = response_codes.to_str(response.response_code) if response else None
        self._record(flow, rcode, _answers(response), None)

    def dns_error(self, flow: dns.DNSFlow) -> None:
        error = flow.error.msg if flow.error else "unknown error"
        self._record(flow, "SERVFAIL", [], error)  # mitmproxy answers SERVFAIL

    def client_disconnected(self, client: connection.Client) -> None:
        for flow in list(self._pending.pop(client.id, {}).values()):
            self._record(flow, None, [], "no answer before the client went away")

    def done(self) -> None:
        for flows in list(self._pending.values()):
            for flow in list(flows.values()):
                self._record(flow, None, [], "proxy stopped")
        self._pending.clear()

    def _record(
        self, flow: dns.DNSFlow, rcode: str | None, answers: list[str], error: str | None
    ) -> None:
        query: Query | None = flow.metadata.get(QUERY)
        if query is None or query.recorded:
            return
        query.recorded = True
        self._pending.get(flow.client_conn.id, {}).pop(id(flow), None)
        decision = query.decision
        self.sink.emit(
            records.dns_event,
            id=query.id,
            **legs.domain(query.name),
            type=query.type,
            client=legs.address(flow.client_conn.peername) or "",
            transport=flow.client_conn.transport_protocol,
            decision="allowed" if decision.allowed else "blocked",
            rule=None if decision.rule is None else str(decision.rule),
            reason=None if decision.allowed else decision.reason,
            answered_by=query.answered_by,
            rcode=rcode,
            answers=answers,
            error=error,
        )


class LenientDNSLayer(DNSLayer):
    """mitmproxy's DNS layer; a datagram whose names do not decode is a query without
    a question (refused and recorded) rather than a crash."""

    def unpack_message(self, data: bytes, from_client: bool) -> list[dns.DNSMessage]:
        try:
            return super().unpack_message(data, from_client)
        except (struct.error, ValueError, IndexError) as e:  # UnicodeError is a ValueError
            udp = self.context.client.transport_protocol == "udp"
            if not (from_client and udp and len(data) >= dns.DNSMessage.HEADER.size):
                raise struct.error(f"undecodable message: {e}") from None
            ident, flags = struct.unpack_from("!HH", data)
            return [
                dns.DNSMessage(
                    id=ident,
                    query=True,
                    op_code=(flags >> 11) & 0b1111,
                    authoritative_answer=False,
                    truncation=False,
                    recursion_desired=bool(flags & (1 << 8)),
                    recursion_available=False,
                    reserved=0,
                    response_code=0,
                    questions=[],
                    answers=[],
                    authorities=[],
                    additionals=[],
                    timestamp=time.time(),
                )
            ]


def use_lenient_dns_layer() -> None:
    """Make mitmproxy's DNS listeners use LenientDNSLayer (process-wide, like its Master)."""
    mode_servers.DnsInstance.make_top_layer = (  # type: ignore[method-assign]
        lambda self, context: LenientDNSLayer(context)
    )
