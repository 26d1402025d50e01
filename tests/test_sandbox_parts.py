"""The pure parts of `agentlog run`: who runs the command, with what, and what it may reach."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from agentlog.errors import ConfigError
from agentlog.policy import Policy
from agentlog.sandbox import guard, netns
from agentlog.sandbox.agent import AgentUser, agent_command, agent_environment, agent_user
from agentlog.sandbox.reach import may, movable_by

NOBODY = AgentUser("nobody", 65534, 65534, "/nonexistent", "/usr/sbin/nologin")
ROOT = AgentUser("root", 0, 0, "/root", "/bin/bash")


def test_the_user_is_the_one_asked_for_else_sudos_caller_and_never_root_unasked():
    assert agent_user("nobody", False, {}).uid == 65534
    assert agent_user(None, False, {"SUDO_USER": "nobody"}).name == "nobody"
    assert agent_user(None, True, {}).is_root
    with pytest.raises(ConfigError, match="--user USER"):
        agent_user(None, False, {})
    with pytest.raises(ConfigError, match="--as-root"):
        agent_user("root", False, {})
    with pytest.raises(ConfigError, match="--as-root"):
        agent_user("0", False, {})
    with pytest.raises(ConfigError, match="no such user"):
        agent_user("no-such-user-here", False, {})


def test_the_environment_points_every_client_at_agentlog():
    base = {
        "PATH": "/bin",
        "AGENTLOG_JOURNAL_KEY": "/k",
        "ALL_PROXY": "socks5://x",
        "HOME": "/root",
    }
    env = agent_environment(base, NOBODY, "http://10.231.0.1:1234", Path("/c.crt"), Path("/b.pem"))
    assert env["PATH"] == "/bin" and env["HOME"] == "/nonexistent" and env["USER"] == "nobody"
    assert "AGENTLOG_JOURNAL_KEY" not in env and "ALL_PROXY" not in env
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        assert env[name] == "http://10.231.0.1:1234"
    assert env["NO_PROXY"] == env["no_proxy"] == "localhost,127.0.0.1,::1"
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"):
        assert env[name] == "/b.pem"
    assert env["NODE_EXTRA_CA_CERTS"] == "/c.crt"


def test_the_command_runs_in_the_namespace_without_privileges():
    command = agent_command("al1s1", NOBODY, ["curl", "--", "x"])
    assert command[:4] == ["ip", "netns", "exec", "al1s1"]
    setpriv = command[4 : command.index("--")]
    assert setpriv[0] == "setpriv"
    for flag in ("--no-new-privs", "--init-groups", "--inh-caps=-all", "--bounding-set=-all"):
        assert flag in setpriv
    assert setpriv[setpriv.index("--reuid") + 1] == "65534"
    assert command[command.index("--") + 1 :] == ["curl", "--", "x"]
    as_root = agent_command("al1s1", ROOT, ["sh"])
    assert "--reuid" not in as_root and "-sys_admin" in ",".join(as_root)


def test_the_guard_denies_the_host_but_where_a_route_points():
    blocks = guard.guard_blocks(
        ["127.0.0.1", "192.168.1.5", "10.231.0.1", "fe80::1"], netns.DEFAULT_POOL
    )
    assert ipaddress.ip_network("192.168.1.5/32") in blocks
    assert ipaddress.ip_network("10.231.0.1/32") not in blocks  # inside the pool already
    routes = {"fake.test": ("127.0.0.1", 8443), "far.test": ("example.com", 443)}
    policy, left_open = guard.guarded(Policy.parse(["*"], []), blocks, routes)
    assert left_open == [ipaddress.ip_network("127.0.0.0/8")]
    assert not policy.decide("192.168.1.5", 22).allowed
    assert not policy.decide("10.231.7.2", 80).allowed
    assert not policy.decide("169.254.169.254", 80).allowed
    assert not policy.decide("[fe80::2]", 80).allowed
    assert policy.decide("127.0.0.1", 22).allowed  # a route points there
    assert policy.decide("example.com", 443).allowed
    assert not policy.decide_address("192.168.1.5", 443).allowed  # what names resolve to


def _stat(uid: int, gid: int, mode: int) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("uid", "gid", "mode", "bits", "expected"),
    [
        (65534, 0, 0o700, 4, True),  # owner
        (0, 0, 0o700, 4, False),
        (0, 65534, 0o750, 4, True),  # group
        (0, 65534, 0o750, 2, False),
        (0, 0, 0o755, 5, True),  # other
        (0, 0, 0o755, 2, False),
    ],
)
def test_permissions_are_read_as_the_kernel_would(uid, gid, mode, bits, expected):
    assert may(_stat(uid, gid, mode), NOBODY, [65534], bits) is expected


def test_a_logs_directory_under_a_writable_directory_can_be_moved(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "logs").mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(shared, 0o777)  # anyone may rename what is in it
    assert movable_by(shared / "logs", NOBODY) == shared / "logs"
    os.chmod(shared, 0o1777)  # sticky, like /tmp: only owners may
    assert movable_by(shared / "logs", NOBODY) is None
