"""DialByName: a request dials its name, spelled canonically.

The name is the one mitmproxy would dial (the URL's or CONNECT's host) in
canonical spelling (agentlog.hosts): `0x7f000001` becomes 127.0.0.1 and an
IDN its IDNA 2008 ASCII form, so the policy, the record and the destination
are one host, not whatever a resolver makes of the agent's spelling.

In transparent mode a redirected connection arrives addressed to an IP the
agent chose; the request goes to its Host / :authority name instead
(resolved by us): an agent cannot name an allowed host while connecting
somewhere else. A name with no canonical spelling is left for the gate to refuse.
"""

from mitmproxy import http

from agentlog.hosts import HostError, canonical_host


class DialByName:
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        transparent = flow.client_conn.proxy_mode.type_name == "transparent"
        try:
            name = canonical_host(request.pretty_host if transparent else request.host)
        except HostError:
            return
        if name != request.host:
            request.data.host = name  # headers untouched: the Host header stays the agent's
