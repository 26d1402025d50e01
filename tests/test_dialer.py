"""Dialer: what a connection dials is what the policy judged (a scripted resolver, no DNS)."""

import asyncio

import pytest

from agentlog.errors import ConfigError
from agentlog.hosts import HostError
from agentlog.policy import Policy
from agentlog.proxy.dialer import Dialer


class ScriptedDns:
    """Answers each lookup of a name with the next answer in its script (rebinding)."""

    def __init__(self, **scripts: list[list[str]]) -> None:
        self.scripts = {name.replace("_", "."): list(answers) for name, answers in scripts.items()}
        self.lookups: list[str] = []

    async def __call__(self, name: str) -> list[str]:
        self.lookups.append(name)
        script = self.scripts.get(name)
        if not script:
            raise OSError(f"{name}: no such name")
        return script.pop(0) if len(script) > 1 else script[0]


DENY_LOOPBACK = Policy.parse(allow=[], deny=["127.0.0.0/8", "169.254.169.254"])


def plan(dialer: Dialer, host: str, port: int = 443, sni: str | None = None):
    return asyncio.run(dialer.plan(host, port, sni))


def test_a_name_resolving_to_a_denied_address_is_refused_and_says_which():
    dns = ScriptedDns(evil_test=[["192.0.2.7", "127.0.0.2"]])
    refused = plan(Dialer(DENY_LOOPBACK, {}, dns), "EVIL.test.")
    assert not refused.decision.allowed
    assert refused.decision.reason == "rule 'deny 127.0.0.0/8': evil.test resolves to 127.0.0.2"


def test_a_mapped_answer_is_judged_as_the_ipv4_address_it_reaches():
    dns = ScriptedDns(meta_test=[["::ffff:169.254.169.254"]])
    refused = plan(Dialer(DENY_LOOPBACK, {}, dns), "meta.test")
    assert not refused.decision.allowed and refused.target[0] == "169.254.169.254"


def test_the_connect_dials_exactly_the_address_that_was_judged():
    """DNS rebinding: the second answer is denied, but nothing asks DNS a second time
    within `remember`, so the gate's check and the router's connect see one answer."""

    async def scenario():
        dns = ScriptedDns(rebind_test=[["192.0.2.1"], ["127.0.0.1"]])
        dialer = Dialer(DENY_LOOPBACK, {}, dns)
        at_request = await dialer.plan("rebind.test", 443)
        at_connect = await dialer.plan("rebind.test", 443)
        return dns, at_request, at_connect

    dns, at_request, at_connect = asyncio.run(scenario())
    assert at_request.decision.allowed and at_connect.decision.allowed
    assert at_request.target == at_connect.target == ("192.0.2.1", 443)
    assert dns.lookups == ["rebind.test"]


def test_past_remember_the_connect_judges_the_new_answer():
    async def scenario():
        dns = ScriptedDns(rebind_test=[["192.0.2.1"], ["127.0.0.1"]])
        dialer = Dialer(DENY_LOOPBACK, {}, dns, remember=0)
        await dialer.plan("rebind.test", 443)
        return await dialer.plan("rebind.test", 443)

    again = asyncio.run(scenario())
    assert not again.decision.allowed and again.target == ("127.0.0.1", 443)


def test_concurrent_lookups_of_one_name_share_one_answer():
    async def scenario():
        dns = ScriptedDns(busy_test=[["192.0.2.1"], ["192.0.2.2"]])
        dialer = Dialer(DENY_LOOPBACK, {}, dns)
        plans = await asyncio.gather(*(dialer.plan("busy.test", 443) for _ in range(5)))
        return dns, plans

    dns, plans = asyncio.run(scenario())
    assert {p.target for p in plans} == {("192.0.2.1", 443)} and len(dns.lookups) == 1


def test_failures_are_not_remembered():
    async def scenario():
        dns = ScriptedDns()
        dialer = Dialer(DENY_LOOPBACK, {}, dns)
        for _ in range(2):
            with pytest.raises(OSError):
                await dialer.plan("gone.test", 443)
        return dns

    assert asyncio.run(scenario()).lookups == ["gone.test", "gone.test"]


def test_a_route_is_an_explicit_dial_target_and_is_judged_too():
    routes = {"API.test.": ("127.0.0.1", 9000), "ok.test": ("192.0.2.9", 9001)}
    dialer = Dialer(DENY_LOOPBACK, routes, ScriptedDns())
    refused = plan(dialer, "api.test")
    assert refused.decision.reason == "rule 'deny 127.0.0.0/8': api.test is routed to 127.0.0.1"
    allowed = plan(dialer, "ok.test")
    assert allowed.decision.allowed and allowed.target == ("192.0.2.9", 9001)


def test_without_address_rules_nothing_is_resolved_and_names_are_dialled_canonically():
    dns = ScriptedDns()
    dialer = Dialer(Policy.parse(allow=["*"], deny=["evil.test"]), {}, dns)
    assert not dialer.judges_addresses
    assert plan(dialer, "Bücher.test.", 80).target == ("xn--bcher-kva.test", 80)
    assert plan(dialer, "0x7f000001", 80).target == ("127.0.0.1", 80)
    assert dns.lookups == []


def test_a_plan_that_needs_no_lookup_is_made_at_once_and_one_that_does_is_not():
    async def scenario():
        dns = ScriptedDns(api_test=[["192.0.2.1"]])
        dialer = Dialer(DENY_LOOPBACK, {"local.test": ("127.0.0.1", 9000)}, dns)
        routed = dialer.plan_now("local.test", 443)
        before = dialer.plan_now("api.test", 443)  # not looked up yet
        looked_up = await dialer.plan("api.test", 443)
        after = dialer.plan_now("api.test", 443)
        return dns, routed, before, looked_up, after

    dns, routed, before, looked_up, after = asyncio.run(scenario())
    assert routed is not None and not routed.decision.allowed
    assert routed.decision.reason == "rule 'deny 127.0.0.0/8': local.test is routed to 127.0.0.1"
    assert before is None and after == looked_up and after.target == ("192.0.2.1", 443)
    assert dns.lookups == ["api.test"]


def test_past_remember_a_plan_needs_its_lookup_again():
    async def scenario():
        dialer = Dialer(DENY_LOOPBACK, {}, ScriptedDns(api_test=[["192.0.2.1"]]), remember=0)
        await dialer.plan("api.test", 443)
        return dialer.plan_now("api.test", 443)

    assert asyncio.run(scenario()) is None


def test_ip_literals_are_judged_without_dns():
    dns = ScriptedDns()
    refused = plan(Dialer(DENY_LOOPBACK, {}, dns), "[::ffff:7f00:1]")
    assert not refused.decision.allowed and dns.lookups == []


def test_garbage_is_refused_not_guessed():
    with pytest.raises(HostError):
        plan(Dialer(DENY_LOOPBACK, {}, ScriptedDns()), "a..b")
    with pytest.raises(ConfigError, match="--route"):
        Dialer(DENY_LOOPBACK, {"a..b": ("127.0.0.1", 1)})
