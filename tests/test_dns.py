"""The DNS listener: each query judged by the policy, answered, and recorded as a `dns` event.

The proxy runs with the test allowlist, every allowed name routed: a query is
either refused or answered locally, so nothing here ever reaches a resolver
(every event says who answered, and the tests check it was never one).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
from mitmproxy import dns
from mitmproxy.net.dns import op_codes, response_codes, types

from agentlog.policy import Policy
from agentlog.proxy.addons.dns import decide_name, judge, local_response
from tests import dnswire
from tests.conftest import API, BLOCKED, UPSTREAM, free_port, proxy_args
from tests.harness import RunningProxy, start_proxy, verify

pytestmark = pytest.mark.timeout(60)

_DNS = re.compile(r"([0-9.]+):(\d+) \(dns\)")
LOCAL_ANSWERS = {"route", "policy", "agentlog"}


def policy(*rules: str) -> Policy:
    allow = [r.removeprefix("allow ") for r in rules if r.startswith("allow ")]
    deny = [r.removeprefix("deny ") for r in rules if r.startswith("deny ")]
    return Policy.parse(allow, deny)


@pytest.mark.parametrize(
    ("rules", "name", "allowed"),
    [
        ((), "anything.test", True),
        (("deny evil.test",), "EVIL.test.", False),
        (("deny evil.test:443",), "evil.test", True),  # refused on 443 only: it may resolve
        (("allow *.github.com:443",), "api.github.com", True),  # allowed on some port
        (("allow *.github.com:443",), "github.com.evil.test", False),
        (("allow ok.test", "deny *.test"), "ok.test", False),  # deny wins
        ((), "a..b", False),  # no canonical spelling
        ((), "xn--zz", False),
    ],
)
def test_a_name_is_judged_whatever_port_it_will_be_used_on(rules, name, allowed):
    assert decide_name(policy(*rules), name).allowed is allowed


def message(name: str, qtype: int = types.A, **changes) -> dns.DNSMessage:
    query = dns.DNSMessage.unpack(dnswire.query(name, "A"))
    query.questions[0].type = qtype
    for key, value in changes.items():
        setattr(query, key, value)
    return query


ROUTES = {"routed.test": ("127.0.0.1", 8443), "far.test": ("192.0.2.7", 443)}


@pytest.mark.parametrize(
    ("query", "local", "rcode", "addresses", "by"),
    [
        (message("routed.test"), "10.231.0.1", response_codes.NOERROR, ("10.231.0.1",), "route"),
        (message("ROUTED.test."), "127.0.0.1", response_codes.NOERROR, ("127.0.0.1",), "route"),
        (message("far.test"), "10.231.0.1", response_codes.NOERROR, ("192.0.2.7",), "route"),
        (message("far.test", types.AAAA), "10.231.0.1", response_codes.NOERROR, (), "route"),
        (message("routed.test", types.TXT), "10.231.0.1", response_codes.NOERROR, (), "route"),
        (message("evil.test"), "10.231.0.1", response_codes.NXDOMAIN, (), "policy"),
        (message("routed.test", questions=[]), None, response_codes.FORMERR, (), "agentlog"),
        (message("x.test", op_code=op_codes.STATUS), None, response_codes.NOTIMP, (), "agentlog"),
    ],
)
def test_refused_and_routed_names_are_answered_here(query, local, rcode, addresses, by):
    verdict = judge(query, policy("deny evil.test"), ROUTES, local)
    assert verdict.answer is not None
    assert (verdict.answer.rcode, verdict.answer.addresses, verdict.answer.answered_by) == (
        rcode,
        addresses,
        by,
    )
    response = local_response(query, verdict.answer)
    assert response.id == query.id and response.response_code == rcode
    assert [str(rr) for rr in response.answers] == list(addresses)


def test_other_allowed_names_are_left_to_the_resolver():
    verdict = judge(message("example.com"), policy(), ROUTES, "10.231.0.1")
    assert verdict.answer is None and verdict.decision.allowed
    assert (verdict.name, verdict.type) == ("example.com", "A")


# -- the real proxy ---------------------------------------------------------------


@pytest.fixture
def dns_proxy(tmp_path, upstream, upstream_ca) -> Iterator[tuple[RunningProxy, tuple[str, int]]]:
    dns_at = f"127.0.0.1:{free_port()}"
    proxy = start_proxy(tmp_path / "logs", *proxy_args(upstream, upstream_ca[1]), "--dns", dns_at)
    found = [m for line in proxy.stderr if (m := _DNS.search(line))]
    assert found, proxy.stderr
    yield proxy, (found[0].group(1), int(found[0].group(2)))
    assert proxy.stop() == 0
    assert verify(proxy.logs).returncode == 0
    answered_by = {e["answered_by"] for e in proxy.events("dns")}
    assert answered_by <= LOCAL_ANSWERS, "a test's query went to a resolver"


def dns_events(proxy: RunningProxy, count: int) -> list[dict]:
    return proxy.wait_for(lambda es: len([e for e in es if e["event"] == "dns"]) >= count)


def test_a_routed_name_is_answered_and_recorded_over_udp_and_tcp(dns_proxy):
    proxy, server = dns_proxy
    got = dnswire.answer(dnswire.ask_udp(server, dnswire.query(UPSTREAM, ident=7)))
    assert got == (7, "NOERROR", ["127.0.0.1"])
    got = dnswire.answer(dnswire.ask_tcp(server, dnswire.query(API.upper() + ".", ident=8)))
    assert got == (8, "NOERROR", ["127.0.0.1"])
    got = dnswire.answer(dnswire.ask_udp(server, dnswire.query(UPSTREAM, "AAAA", ident=9)))
    assert got == (9, "NOERROR", [])
    udp, tcp, aaaa = [e for e in dns_events(proxy, 3) if e["event"] == "dns"]
    assert udp["domain"] == UPSTREAM and udp["type"] == "A" and udp["transport"] == "udp"
    assert udp["rcode"] == "NOERROR" and udp["answers"] == ["A 127.0.0.1"]
    assert udp["decision"] == "allowed" and udp["answered_by"] == "route"
    assert udp["client"].startswith("127.0.0.1:") and udp["error"] is None
    assert tcp["domain"] == API and tcp["transport"] == "tcp"  # canonical, as asked
    assert aaaa["type"] == "AAAA" and aaaa["answers"] == []
    assert len({e["id"] for e in (udp, tcp, aaaa)}) == 3


def test_a_denied_name_gets_no_address_and_is_recorded_with_the_rule(dns_proxy):
    proxy, server = dns_proxy
    names = [BLOCKED, "example.com", "xn--bcher-kva.test", "a_b.test"]
    for name in names:
        got = dnswire.answer(dnswire.ask_udp(server, dnswire.query(name)))
        assert got[1:] == ("NXDOMAIN", [])
    events = [e for e in dns_events(proxy, 4) if e["event"] == "dns"]
    assert [e["domain"] for e in events] == names
    assert events[2]["domain_unicode"] == "bücher.test"
    for event in events:
        assert event["decision"] == "blocked" and event["rcode"] == "NXDOMAIN"
        assert event["answered_by"] == "policy"
        assert event["reason"] == "not on the allowlist"


def test_a_name_that_does_not_decode_is_refused_and_recorded(dns_proxy):
    proxy, server = dns_proxy
    for label in (b"xn--zz", b"caf\xe9"):  # bad punycode (crashed mitmproxy), not UTF-8
        packet = dnswire.query("x.test", ident=3).replace(b"\x01x", bytes([len(label)]) + label)
        assert dnswire.answer(dnswire.ask_udp(server, packet))[:2] == (3, "FORMERR")
    escape = dnswire.query("x.test", ident=4).replace(b"\x01x", b"\x04\x1b[2J")
    assert dnswire.answer(dnswire.ask_udp(server, escape))[:2] == (4, "NXDOMAIN")
    events = [e for e in dns_events(proxy, 3) if e["event"] == "dns"]
    for event in events[:2]:
        assert event["domain"] is None and event["rcode"] == "FORMERR"
        assert event["reason"] == "not one decodable question"
    assert events[2]["domain"] == "\x1b[2J.test"  # JSON-escaped in the journal
    assert events[2]["reason"].startswith("not a valid host")
    assert not any("crashed" in line for line in proxy.stderr)


def test_garbage_does_not_stop_the_dns_listener(dns_proxy):
    proxy, server = dns_proxy
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"\x00", b"\xff" * 11, dnswire.query(UPSTREAM)[:-3], bytes(512)):
            s.sendto(junk, server)
    two = dnswire.query(UPSTREAM, ident=5)
    two = two[:4] + b"\x00\x02" + two[6:] + two[12:]  # two questions
    assert dnswire.answer(dnswire.ask_udp(server, two))[1] == "FORMERR"
    cut = dnswire.query(UPSTREAM, ident=4)[:-3]  # a whole header: answered and recorded
    assert dnswire.answer(dnswire.ask_udp(server, cut))[:2] == (4, "FORMERR")
    with socket.create_connection(server, timeout=3) as s:
        s.sendall(b"\x00\x00garbage")  # a zero length prefix: mitmproxy closes
        s.recv(10)
    got = dnswire.answer(dnswire.ask_udp(server, dnswire.query(UPSTREAM, ident=6)))
    assert got == (6, "NOERROR", ["127.0.0.1"])
    events = [e for e in dns_events(proxy, 2) if e["event"] == "dns"]
    assert events[-3]["rcode"] == events[-2]["rcode"] == "FORMERR"
    assert events[-2]["domain"] is None
    assert events[-1]["domain"] == UPSTREAM
    assert proxy.proc.poll() is None
