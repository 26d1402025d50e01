"""The transparent listener: an agent that ignores proxy settings is still recorded.

The agent runs in its own network namespace behind the sandbox's firewall,
which redirects every TCP connection it opens to the proxy's transparent port.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import (
    PLAIN,
    UPSTREAM,
    assert_every_request_closed_once,
    free_port,
    proxy_args,
)
from tests.harness import RunningProxy, start_proxy
from tests.netns import AgentNamespace, can_make_namespaces

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not can_make_namespaces(), reason="needs root, ip, nft"),
]


@pytest.fixture
def redirected(tmp_path, upstream, upstream_ca) -> Iterator[tuple[AgentNamespace, RunningProxy]]:
    with AgentNamespace() as ns:
        port = free_port()
        proxy = start_proxy(
            tmp_path / "logs",
            *proxy_args(upstream, upstream_ca[1]),
            "--transparent",
            f"{ns.host_ip}:{port}",
        )
        ns.firewall(explicit=free_port(), transparent=port, dns=free_port())
        yield ns, proxy
        assert proxy.stop() == 0
        assert_every_request_closed_once(proxy.events())


def agent_curl(ns: AgentNamespace, *args: str) -> bytes:
    got = ns.run("curl", "-sS", "--max-time", "20", *args, check=False)
    assert got.returncode == 0, got.stderr
    return got.stdout


def test_redirected_https_is_recorded_as_transparent(redirected):
    ns, proxy = redirected
    # No proxy settings at all: the agent just dials "upstream.test:443".
    got = agent_curl(
        ns,
        "--cacert",
        str(proxy.ca),
        "--resolve",
        f"{UPSTREAM}:443:{ns.host_ip}",
        f"https://{UPSTREAM}/hello?via=redirect",
    )
    assert got == b"hello"
    proxy.wait_for(lambda es: any(e["event"] == "response" for e in es))
    request, response = proxy.exchange("/hello")
    assert request["mode"] == "transparent"
    assert request["domain"] == UPSTREAM and request["port"] == 443
    assert request["client"].startswith(ns.agent_ip + ":")
    assert request["agent_dst"] == f"{ns.host_ip}:443"
    assert response["status"] == 200


def test_redirected_traffic_goes_to_the_name_not_the_address(redirected):
    """The agent dials an address of its choosing; we dial the name it put in Host/SNI."""
    ns, proxy = redirected
    # Plain HTTP to an address nobody allowed, naming an allowed host: it reaches that
    # host (routed to its fake), and is recorded under its name.
    got = agent_curl(ns, "-H", f"Host: {PLAIN}", f"http://{ns.host_ip}/echo?plain=1")
    assert json.loads(got)["path"] == "/echo?plain=1"
    # A Host header naming a host off the allowlist is refused, whatever the address.
    got = agent_curl(ns, "-H", "Host: blocked.test", f"http://{ns.host_ip}/steal")
    assert b"agentlog: blocked blocked.test" in got
    proxy.wait_for(lambda es: any(e["event"] == "blocked" for e in es))
    plain, response = proxy.exchange("/echo?plain=1")
    assert plain["domain"] == PLAIN and plain["mode"] == "transparent"
    assert plain["agent_dst"] == f"{ns.host_ip}:80"
    assert response["status"] == 200
