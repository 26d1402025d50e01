"""DialByName on mitmproxy's test flows: a request dials its name, spelled
canonically; in transparent mode, the name in its Host header."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.proxy.layers import http as http_hooks
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow, tutils

from agentlog.proxy.addons.dial_by_name import DialByName
from tests.addon_support import addon_hooks


def dialled(host: str, host_header: str, mode: str = "regular") -> http.HTTPFlow:
    """The request after the hook: `request.host` is what mitmproxy will dial."""
    req = tutils.treq(host=host, port=443, scheme=b"https", headers=http.Headers(host=host_header))
    flow = tflow.tflow(req=req)
    flow.client_conn.proxy_mode = ProxyMode.parse(mode)
    with addon_hooks(DialByName()) as run:
        run(http_hooks.HttpRequestHeadersHook(flow))
    return flow


@pytest.mark.parametrize(
    "host, canonical",
    [
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("API.Test.", "api.test"),
        ("bücher.test", "xn--bcher-kva.test"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("api.test", "api.test"),
    ],
)
def test_a_request_dials_its_own_name_spelled_canonically(host, canonical):
    flow = dialled(host, host_header=host)
    assert flow.request.host == canonical
    assert flow.request.headers["host"] == host  # what the agent sent is not rewritten


def test_in_regular_mode_the_host_header_does_not_choose_the_destination():
    # An explicit proxy dials the URL's host; PolicyGate judges the Host header separately.
    assert dialled("api.test", host_header="evil.test").request.host == "api.test"


def test_in_transparent_mode_the_request_goes_to_its_host_header_not_the_address_dialled():
    flow = dialled("10.9.8.7", host_header="API.test.", mode="transparent")
    assert flow.request.host == "api.test" and flow.request.headers["host"] == "API.test."


def test_in_transparent_mode_without_a_host_header_the_address_stays():
    req = tutils.treq(host="10.9.8.7", port=80, headers=http.Headers())
    flow = tflow.tflow(req=req)
    flow.client_conn.proxy_mode = ProxyMode.parse("transparent")
    with addon_hooks(DialByName()) as run:
        run(http_hooks.HttpRequestHeadersHook(flow))
    assert flow.request.host == "10.9.8.7"


@pytest.mark.parametrize("mode", ["regular", "transparent"])
def test_a_name_with_no_canonical_form_is_left_for_the_gate_to_refuse(mode):
    assert dialled("a..b", host_header="a..b", mode=mode).request.host == "a..b"
