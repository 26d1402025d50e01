"""Policy and option parsing (pure)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlog.config import parse_duration, parse_hostport, parse_route, parse_size
from agentlog.errors import ConfigError
from agentlog.policy import Policy, Rule

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
    "bad", ["", "bad host", "a.com:0", "a.com:http", "a.com:1:2", "[::1", "a/b"]
)
def test_bad_patterns_are_refused(bad):
    with pytest.raises(ConfigError, match="pattern"):
        Rule.parse("allow", bad)


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
