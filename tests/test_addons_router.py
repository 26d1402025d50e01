"""Router, hook by hook, on mitmproxy's connection objects: the TCP connect goes to
what the Dialer decided, and the connection is left named for the host it serves."""

from __future__ import annotations

import pytest
from mitmproxy import connection
from mitmproxy.connection import ConnectionState
from mitmproxy.proxy import server_hooks

from agentlog.policy import Policy
from agentlog.proxy.addons.router import Router
from agentlog.proxy.dialer import Dialer
from tests.addon_support import Hooks, addon_hooks


def router(
    routes: dict[str, tuple[str, int]] | None = None,
    deny: tuple[str, ...] = (),
    dns: dict[str, list[str]] | None = None,
) -> Router:
    lookups = dns or {}

    async def resolve(name: str) -> list[str]:
        if name not in lookups:
            raise OSError(f"{name}: Name or service not known")
        return lookups[name]

    return Router(Dialer(Policy.parse([], list(deny)), routes or {}, resolve=resolve))


def server(address: tuple[str, int] | None, *, tls: bool = False, sni: str | None = None):
    return connection.Server(address=address, tls=tls, sni=sni)


def data(s: connection.Server) -> server_hooks.ServerConnectionHookData:
    return server_hooks.ServerConnectionHookData(s, None)


def connect(run: Hooks, s: connection.Server) -> tuple[str, int] | None:
    """mitmproxy is about to dial: where it will connect."""
    run(server_hooks.ServerConnectHook(data(s)))
    return s.address


def connected(run: Hooks, s: connection.Server) -> None:
    s.state = ConnectionState.OPEN  # mitmproxy opens it, then calls the hook
    run(server_hooks.ServerConnectedHook(data(s)))


def test_a_routed_host_is_dialled_at_its_route_and_named_again_once_connected():
    s = server(("api.test", 443), tls=True)
    with addon_hooks(router({"api.test": ("127.0.0.1", 9443)})) as run:
        assert connect(run, s) == ("127.0.0.1", 9443)
        assert s.sni == "api.test"  # the TLS name and certificate check stay the host's
        connected(run, s)
    # mitmproxy forbids moving an open connection; the name is put back all the same,
    # so the record says api.test and the next request to it reuses this connection.
    assert s.address == ("api.test", 443) and s.state is ConnectionState.OPEN
    with pytest.raises(RuntimeError):
        s.address = ("127.0.0.1", 9443)


def test_a_routed_plain_connection_gets_no_tls_name_and_a_given_one_is_kept():
    plain, named = server(("api.test", 80)), server(("api.test", 443), tls=True, sni="x.test")
    with addon_hooks(router({"api.test": ("127.0.0.1", 9000)})) as run:
        connect(run, plain)
        connect(run, named)
    assert plain.sni is None and named.sni == "x.test"


def test_a_route_is_found_by_the_tls_name():
    s = server(("10.0.0.1", 443), tls=True, sni="api.test")  # transparent: the agent's IP
    with addon_hooks(router({"api.test": ("127.0.0.1", 9443)})) as run:
        assert connect(run, s) == ("127.0.0.1", 9443)


def test_a_name_spelled_otherwise_is_dialled_canonically():
    s = server(("0x7f000001", 8080))
    with addon_hooks(router()) as run:
        assert connect(run, s) == ("127.0.0.1", 8080)
        connected(run, s)
    assert s.address == ("0x7f000001", 8080)


def test_a_canonical_unrouted_name_is_left_as_it_is():
    s = server(("api.test", 443), tls=True)
    with addon_hooks(router()) as run:
        assert connect(run, s) == ("api.test", 443)
        connected(run, s)
    assert s.sni is None  # mitmproxy fills it in itself


def test_a_host_with_no_canonical_form_is_not_dialled():
    s = server(("a..b", 443))
    with addon_hooks(router()) as run:
        connect(run, s)
    assert s.error is not None and s.error.startswith("agentlog: refused 'a..b': ")
    assert s.address == ("a..b", 443)


def test_a_connection_already_refused_or_without_address_is_left_alone():
    refused = server(("api.test", 443))
    refused.error = "agentlog: blocked api.test:443 by policy (not on the allowlist)"
    nowhere = server(None)
    with addon_hooks(router({"api.test": ("127.0.0.1", 1)})) as run:
        assert connect(run, refused) == ("api.test", 443)
        assert connect(run, nowhere) is None
    assert refused.error.startswith("agentlog: blocked")


def test_a_failed_connect_is_forgotten():
    r = router({"api.test": ("127.0.0.1", 1)})
    s = server(("api.test", 443))
    with addon_hooks(r) as run:
        connect(run, s)
        s.error = "Connection refused"
        run(server_hooks.ServerConnectErrorHook(data(s)))
        # A connection that never opened is not named again: it stays what was tried.
        run(server_hooks.ServerConnectedHook(data(s)))
    assert s.address == ("127.0.0.1", 1)


# -- with deny rules on addresses: the address judged is the address dialled ------


def test_a_name_is_pinned_to_the_first_address_it_was_judged_by():
    s = server(("api.test", 443), tls=True)
    r = router(deny=("10.0.0.0/8",), dns={"api.test": ["192.0.2.7", "192.0.2.8"]})
    with addon_hooks(r) as run:
        assert connect(run, s) == ("192.0.2.7", 443)
        assert s.sni == "api.test"
        connected(run, s)
    assert s.address == ("api.test", 443)


def test_with_address_rules_a_route_is_found_by_the_tls_name_and_judged_as_routed():
    s = server(("10.0.0.1", 443), tls=True, sni="api.test")  # transparent: the agent's IP
    r = router({"api.test": ("127.0.0.1", 9443)}, deny=("10.0.0.0/8",))
    with addon_hooks(r) as run:
        assert connect(run, s) == ("127.0.0.1", 9443)
    assert s.error is None


def test_a_name_resolving_to_a_denied_address_is_not_dialled():
    s = server(("metadata.test", 80))
    r = router(deny=("169.254.0.0/16",), dns={"metadata.test": ["169.254.169.254"]})
    with addon_hooks(r) as run:
        connect(run, s)
    assert s.error == (
        "agentlog: blocked metadata.test:80 by policy "
        "(rule 'deny 169.254.0.0/16': metadata.test resolves to 169.254.169.254)"
    )
    assert s.address == ("metadata.test", 80)


def test_a_name_that_does_not_resolve_is_not_dialled():
    s = server(("nowhere.test", 443))
    with addon_hooks(router(deny=("10.0.0.0/8",))) as run:
        connect(run, s)
    assert s.error == "cannot resolve nowhere.test: nowhere.test: Name or service not known"


def test_with_address_rules_a_host_with_no_canonical_form_is_not_dialled():
    s = server(("a..b", 443))
    with addon_hooks(router(deny=("10.0.0.0/8",))) as run:
        connect(run, s)
    assert s.error is not None and s.error.startswith("agentlog: refused 'a..b': ")
