"""PolicyGate, hook by hook, on mitmproxy's test flows: what is refused, the 403
the agent reads, the decision left for the recorders, and the dial it stops."""

from __future__ import annotations

import pytest
from mitmproxy import connection, http
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers import http as http_hooks
from mitmproxy.proxy.layers import tcp as tcp_hooks
from mitmproxy.test import tflow, tutils

from agentlog.policy import Policy
from agentlog.proxy.addons.policy_gate import DECISION, PolicyGate
from agentlog.proxy.dialer import Dialer
from tests.addon_support import addon_hooks


def gate(
    allow: tuple[str, ...] = (),
    deny: tuple[str, ...] = (),
    dns: dict[str, list[str]] | None = None,
    routes: dict[str, tuple[str, int]] | None = None,
) -> PolicyGate:
    """A gate whose Dialer resolves from `dns` only; a name missing there does not resolve."""
    lookups = dns or {}

    async def resolve(name: str) -> list[str]:
        if name not in lookups:
            raise OSError(f"{name}: Name or service not known")
        return lookups[name]

    policy = Policy.parse(list(allow), list(deny))
    return PolicyGate(policy, Dialer(policy, routes or {}, resolve=resolve))


def request_to(host: str, host_header: str | None = None, port: int = 443) -> http.HTTPFlow:
    headers = http.Headers(host=host_header or host)
    req = tutils.treq(host=host, port=port, scheme=b"https", headers=headers, content=b"")
    return tflow.tflow(req=req)


def refusal_of(flow: http.HTTPFlow) -> str | None:
    """The agent's answer, if the gate answered: its body, after checking it is our 403."""
    if flow.response is None:
        return None
    assert flow.response.status_code == 403
    assert flow.response.headers["x-agentlog"] == "blocked"
    assert flow.response.headers["content-type"] == "text/plain; charset=utf-8"
    return flow.response.text


def judge(g: PolicyGate, flow: http.HTTPFlow) -> str | None:
    with addon_hooks(g) as run:
        run(http_hooks.HttpRequestHeadersHook(flow))
    return refusal_of(flow)


# -- requests -------------------------------------------------------------------


def test_an_allowed_request_goes_on_with_its_decision_noted():
    g, flow = gate(allow=("api.test",)), request_to("api.test")
    assert g.requestheaders(flow) is None  # no address rules: decided at once
    assert flow.response is None
    decision = flow.metadata[DECISION]
    assert decision.allowed and str(decision.rule) == "allow api.test"


@pytest.mark.parametrize(
    "allow, deny, host, host_header, refusal",
    [
        (
            (),
            ("evil.test",),
            "EVIL.test.",
            None,
            "agentlog: blocked evil.test:443 by policy (rule 'deny evil.test')\n",
        ),
        (
            ("api.test",),
            (),
            "other.test",
            None,
            "agentlog: blocked other.test:443 by policy (not on the allowlist)\n",
        ),
        (  # an allowed name dialled, a refused one in the Host header
            ("api.test",),
            (),
            "api.test",
            "evil.test",
            "agentlog: blocked evil.test:443 by policy (not on the allowlist)\n",
        ),
        (
            (),
            ("127.0.0.1",),
            "0x7f000001",
            None,
            "agentlog: blocked 127.0.0.1:443 by policy (rule 'deny 127.0.0.1')\n",
        ),
        (
            (),
            ("xn--bcher-kva.test",),
            "bücher.test",
            None,
            "agentlog: blocked xn--bcher-kva.test:443 by policy (rule 'deny xn--bcher-kva.test')\n",
        ),
        (
            (),
            (),
            "a..b",
            None,
            "agentlog: blocked a..b:443 by policy"
            " (not a valid host: empty label (two dots in a row))\n",
        ),
    ],
    ids=["deny-rule", "allowlist", "host-header", "ip-spelling", "idn", "no-canonical-form"],
)
def test_a_refused_request_gets_a_403_naming_the_host_and_the_rule(
    allow, deny, host, host_header, refusal
):
    flow = request_to(host, host_header)
    assert judge(gate(allow, deny), flow) == refusal
    assert not flow.metadata[DECISION].allowed  # for the Recorder's `blocked` event


def test_a_name_resolving_to_a_denied_address_gets_a_403_naming_the_address():
    g = gate(deny=("169.254.0.0/16",), dns={"metadata.test": ["10.0.0.1", "169.254.169.254"]})
    assert judge(g, request_to("metadata.test")) == (
        "agentlog: blocked metadata.test:443 by policy "
        "(rule 'deny 169.254.0.0/16': metadata.test resolves to 169.254.169.254)\n"
    )


def test_a_name_routed_to_a_denied_address_gets_a_403_saying_so():
    g = gate(deny=("10.0.0.0/8",), routes={"internal.test": ("10.1.1.1", 80)})
    assert judge(g, request_to("internal.test", port=80)) == (
        "agentlog: blocked internal.test:80 by policy "
        "(rule 'deny 10.0.0.0/8': internal.test is routed to 10.1.1.1)\n"
    )


def test_with_address_rules_a_request_that_needs_no_lookup_is_decided_at_once():
    routes = {"in.test": ("10.1.1.1", 80), "ok.test": ("192.0.2.1", 80)}
    g = gate(deny=("10.0.0.0/8",), routes=routes)
    refused, allowed = request_to("in.test", port=80), request_to("ok.test", port=80)
    assert g.requestheaders(refused) is None and g.requestheaders(allowed) is None
    assert "in.test is routed to 10.1.1.1" in refusal_of(refused)
    assert allowed.response is None and allowed.metadata[DECISION].allowed


def test_with_address_rules_a_name_with_only_allowed_addresses_goes_on():
    flow = request_to("api.test")
    assert judge(gate(deny=("10.0.0.0/8",), dns={"api.test": ["192.0.2.7"]}), flow) is None
    assert flow.metadata[DECISION].allowed


def test_with_address_rules_a_name_that_does_not_resolve_goes_on_to_fail_at_the_connect():
    flow = request_to("nowhere.test")
    assert judge(gate(deny=("10.0.0.0/8",)), flow) is None
    assert flow.metadata[DECISION].allowed


def test_a_name_refused_by_name_is_refused_without_a_lookup():
    g = gate(deny=("10.0.0.0/8", "evil.test"))  # evil.test does not resolve: never asked
    assert "rule 'deny evil.test'" in judge(g, request_to("evil.test"))


# -- CONNECT and raw relays -----------------------------------------------------


def connect_to(host: str, port: int) -> http.HTTPFlow:
    return tflow.tflow(req=tutils.treq(method=b"CONNECT", host=host, port=port, path=b""))


def test_a_refused_connect_is_answered_403_before_any_200():
    flow = connect_to("evil.test", 22)
    with addon_hooks(gate(deny=("evil.test",))) as run:
        run(http_hooks.HttpConnectHook(flow))
    assert refusal_of(flow) == "agentlog: blocked evil.test:22 by policy (rule 'deny evil.test')\n"
    assert not flow.metadata[DECISION].allowed


def test_an_allowed_connect_is_left_for_mitmproxy_to_answer():
    flow = connect_to("echo.test", 22)
    with addon_hooks(gate(allow=("echo.test:22",))) as run:
        run(http_hooks.HttpConnectHook(flow))
    assert flow.response is None and flow.metadata[DECISION].allowed


@pytest.mark.parametrize(
    "address, sni, allowed",
    [
        (("echo.test", 22), None, True),
        (("10.0.0.1", 22), "echo.test", True),  # the TLS name is what was asked for
        (("10.0.0.1", 22), None, False),
        (("echo.test", 23), None, False),
    ],
)
def test_a_relay_states_the_decision_for_its_record(address, sni, allowed):
    flow = tflow.ttcpflow(messages=[])
    flow.server_conn.address, flow.server_conn.sni = address, sni
    with addon_hooks(gate(allow=("echo.test:22",))) as run:
        run(tcp_hooks.TcpStartHook(flow))
    assert flow.metadata[DECISION].allowed is allowed


def test_a_relay_with_no_destination_yet_has_no_decision():
    flow = tflow.ttcpflow(messages=[])
    flow.server_conn.address = None
    with addon_hooks(gate(allow=("echo.test",))) as run:
        run(tcp_hooks.TcpStartHook(flow))
    assert DECISION not in flow.metadata


# -- every connection, at the dial ----------------------------------------------


def dial(g: PolicyGate, address: tuple[str, int] | None, sni: str | None = None):
    server = connection.Server(address=address, sni=sni)
    with addon_hooks(g) as run:
        run(server_hooks.ServerConnectHook(server_hooks.ServerConnectionHookData(server, None)))
    return server


def test_a_refused_dial_is_stopped_before_mitmproxy_connects():
    server = dial(gate(allow=("api.test",)), ("10.0.0.1", 443))
    assert server.error == "agentlog: blocked 10.0.0.1:443 by policy (not on the allowlist)"


def test_a_dial_is_judged_by_its_tls_name_when_it_has_one():
    g = gate(deny=("evil.test",))
    assert dial(g, ("192.0.2.1", 443), sni="evil.test").error == (
        "agentlog: blocked evil.test:443 by policy (rule 'deny evil.test')"
    )
    assert dial(g, ("192.0.2.1", 443), sni="good.test").error is None


def test_a_connection_with_no_address_is_not_judged():
    assert dial(gate(allow=("api.test",)), None).error is None
