"""Policy and option parsing (pure)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlog.config import parse_duration, parse_hostport, parse_route, parse_size
from agentlog.errors import ConfigError
from agentlog.policy import Policy, Rule
from tests.samples import LOOPBACK_SPELLINGS, ipv4_spellings

hosts = st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z][a-z0-9]{0,8}){1,3}", fullmatch=True)
ports = st.integers(1, 65535)


def test_allowlist_refuses_the_rest_and_deny_wins():
    policy = Policy.parse(allow=["*.github.com", "api.anthropic.com:443"], deny=["evil.github.com"])
    assert policy.decide("api.github.com", 443).allowed
    assert policy.decide("api.anthropic.com", 443).allowed
    assert not policy.decide("api.anthropic.com", 80).allowed
    assert not policy.decide("github.com", 443).allowed  # *.x matches subdomains only
    refused = policy.decide("evil.github.com", 443)
    assert not refused.allowed and str(refused.rule) == "deny evil.github.com"
    assert policy.decide("example.org", 443).reason == "not on the allowlist"


def test_no_rules_allow_everything_and_ipv6_patterns_parse():
    assert Policy().decide("anything.test", 1).allowed
    rule = Rule.parse("allow", "[::1]:8443")
    assert rule.matches("::1", 8443) and not rule.matches("::1", 8444)
    assert str(rule) == "allow [::1]:8443"


@given(hosts, ports)
def test_a_denied_host_is_never_allowed(host, port):
    policy = Policy.parse(allow=[host, "*"], deny=[host])
    assert not policy.decide(host, port).allowed
    assert not policy.decide(host.upper(), port).allowed  # names are case-insensitive


@pytest.mark.parametrize(
    "bad",
    ["", "bad host", "a.com:0", "a.com:http", "a.com:1:2", "[::1", "a/b", "a..b", "\u2603.com"],
)
def test_bad_patterns_are_refused(bad):
    with pytest.raises(ConfigError, match="pattern"):
        Rule.parse("allow", bad)


@pytest.mark.parametrize(
    ("pattern", "shown"),
    [
        ("0x7f000001", "deny 127.0.0.1"),
        ("127.1:8080", "deny 127.0.0.1:8080"),
        ("[::ffff:127.0.0.1]", "deny 127.0.0.1"),
        ("EVIL.com.", "deny evil.com"),
        ("*.Bücher.example", "deny *.xn--bcher-kva.example"),
        ("169.254.0.0/16", "deny 169.254.0.0/16"),
        ("169.254.1.1/16:80", "deny 169.254.0.0/16:80"),
        ("[fd00::/8]", "deny [fd00::/8]"),
        ("[::ffff:10.0.0.0/104]", "deny 10.0.0.0/8"),
    ],
)
def test_rules_are_spelled_canonically(pattern, shown):
    assert str(Rule.parse("deny", pattern)) == shown


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
def test_a_denied_address_is_refused_in_every_spelling(spelling):
    policy = Policy.parse(allow=["*"], deny=["127.0.0.1"])
    if spelling.startswith("000000127"):  # octal 0127: another address
        assert policy.decide(spelling, 80).allowed
        return
    decision = policy.decide(spelling, 80)
    assert not decision.allowed and str(decision.rule) == "deny 127.0.0.1"


@given(ipv4_spellings(), ports)
def test_a_denied_address_is_never_allowed_whatever_the_spelling(spelled, port):
    number, spelling = spelled
    address = f"{number >> 24}.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"
    for denied in (address, f"[::ffff:{address}]", f"{address}/32", str(number)):
        policy = Policy.parse(allow=[spelling, "*"], deny=[denied])
        assert not policy.decide(spelling, port).allowed
        assert not policy.decide_address(address, port).allowed


def test_trailing_dot_case_and_unicode_dots_do_not_pass_a_name_rule():
    policy = Policy.parse(allow=[], deny=["evil.com"])
    for spelling in ("evil.com.", "EVIL.COM", "evil\u3002com", "ev%69l.com", "ＥＶＩＬ.com"):
        assert not policy.decide(spelling, 443).allowed, spelling


def test_address_blocks_and_the_unspecified_address():
    policy = Policy.parse(allow=[], deny=["169.254.0.0/16", "127.0.0.1"])
    assert not policy.decide("0xa9fea9fe", 80).allowed  # 169.254.169.254
    assert not policy.decide("[::ffff:169.254.1.2]", 80).allowed
    assert policy.decide("169.255.0.1", 80).allowed
    assert not policy.decide("0.0.0.0", 80).allowed  # reaches loopback
    assert not policy.decide("0", 80).allowed
    assert policy.decide("metadata.example", 80).allowed  # a name is in no block...
    assert not policy.decide_address("169.254.169.254", 80).allowed  # ...its address may be


def test_garbage_hosts_are_refused_with_a_reason():
    decision = Policy().decide("xn--zz.example", 443)
    assert not decision.allowed and decision.reason.startswith("not a valid host")


def test_only_deny_rules_on_addresses_judge_resolved_addresses():
    assert not Policy.parse(allow=["api.example"], deny=["*.evil.com"]).has_address_rules
    assert not Policy.parse(allow=["10.0.0.1"], deny=[]).has_address_rules
    for pattern in ("10.0.0.1", "10.*", "10.0.0.0/8", "[::1]", "[fd00::/8]"):
        policy = Policy.parse(allow=["api.example"], deny=[pattern])
        assert policy.has_address_rules, pattern
    policy = Policy.parse(allow=["api.example"], deny=["10.*", "*"])
    assert not policy.decide_address("10.1.2.3", 443).allowed
    assert policy.decide_address("192.0.2.1", 443).allowed  # `*` is a name rule


def test_option_values():
    assert parse_hostport("127.0.0.1:8080", "--listen") == ("127.0.0.1", 8080)
    assert parse_hostport("[::1]:0", "--listen") == ("::1", 0)
    assert parse_route("API.test=127.0.0.1:9") == ("api.test", ("127.0.0.1", 9))
    assert parse_size("1M") == 1024 * 1024 and parse_size("512k") == 512 * 1024
    assert parse_duration("1h") == 3600 and parse_duration("90s") == 90
    for parse, bad in (
        (lambda v: parse_hostport(v, "--listen"), "8080"),
        (parse_route, "x"),
        (parse_size, "1T"),
        (parse_duration, "-1"),
        (parse_duration, "soon"),
    ):
        with pytest.raises(ConfigError):
            parse(bad)
