"""The transparent listener: an agent that ignores proxy settings is still recorded.

The agent runs in its own network namespace; the host redirects its port 443
traffic to the proxy's transparent port, as the sandbox's firewall does.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import PLAIN, UPSTREAM, free_port, proxy_args
from tests.harness import start_proxy
from tests.netns import AgentNamespace, can_make_namespaces

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not can_make_namespaces(), reason="needs root, ip, iptables"),
]


def test_redirected_https_is_recorded_as_transparent(tmp_path, upstream, upstream_ca):
    with AgentNamespace() as ns:
        port = free_port()
        proxy = start_proxy(
            tmp_path / "logs",
            *proxy_args(upstream, upstream_ca[1]),
            "--transparent",
            f"{ns.host_ip}:{port}",
        )
        try:
            ns.iptables(
                "-t",
                "nat",
                "PREROUTING",
                "-i",
                ns.host_if,
                "-p",
                "tcp",
                "--dport",
                "443",
                "-j",
                "REDIRECT",
                "--to-ports",
                str(port),
            )
            # No proxy settings at all: the agent just dials "upstream.test:443".
            got = ns.run(
                "curl",
                "-sS",
                "--max-time",
                "20",
                "--cacert",
                str(proxy.ca),
                "--resolve",
                f"{UPSTREAM}:443:{ns.host_ip}",
                f"https://{UPSTREAM}/hello?via=redirect",
                check=False,
            )
            assert got.stdout == b"hello", got.stderr
            proxy.wait_for(lambda es: any(e["event"] == "response" for e in es))
            request, response = proxy.exchange("/hello")
            assert request["mode"] == "transparent"
            assert request["domain"] == UPSTREAM and request["port"] == 443
            assert request["client"].startswith(ns.agent_ip + ":")
            assert response["status"] == 200
        finally:
            proxy.stop()


def test_redirected_traffic_goes_to_the_name_not_the_address(tmp_path, upstream, upstream_ca):
    """The agent dials an address of its choosing; we dial the name it put in Host/SNI."""
    with AgentNamespace() as ns:
        port = free_port()
        proxy = start_proxy(
            tmp_path / "logs",
            *proxy_args(upstream, upstream_ca[1]),
            "--transparent",
            f"{ns.host_ip}:{port}",
        )
        try:
            ns.iptables(
                "-t",
                "nat",
                "PREROUTING",
                "-i",
                ns.host_if,
                "-p",
                "tcp",
                "-m",
                "multiport",
                "--dports",
                "80,443",
                "-j",
                "REDIRECT",
                "--to-ports",
                str(port),
            )
            # Plain HTTP to an address nobody allowed, naming an allowed host: it reaches
            # that host (routed to its fake), and is recorded under its name.
            got = ns.run(
                "curl",
                "-sS",
                "--max-time",
                "20",
                "-H",
                f"Host: {PLAIN}",
                f"http://{ns.host_ip}/echo?plain=1",
                check=False,
            )
            assert json.loads(got.stdout)["path"] == "/echo?plain=1", got.stderr
            # A Host header naming a host off the allowlist is refused, whatever the address.
            got = ns.run(
                "curl",
                "-sS",
                "--max-time",
                "20",
                "-H",
                "Host: blocked.test",
                f"http://{ns.host_ip}/steal",
                check=False,
            )
            assert b"agentlog: blocked blocked.test" in got.stdout
            proxy.wait_for(lambda es: any(e["event"] == "blocked" for e in es))
            plain, response = proxy.exchange("/echo?plain=1")
            assert plain["domain"] == PLAIN and plain["mode"] == "transparent"
            assert plain["agent_dst"] == f"{ns.host_ip}:80"
            assert response["status"] == 200
        finally:
            proxy.stop()
