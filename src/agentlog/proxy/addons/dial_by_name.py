"""Transparent mode: dial the name the agent asked for, not the address it picked.

A redirected connection arrives addressed to an IP the agent chose. Sending
the request to the Host / :authority name instead (resolved by us) keeps the
record, the policy and the real destination in agreement: an agent cannot
name an allowed host while connecting somewhere else.
"""

from mitmproxy import http


class DialByName:
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.client_conn.proxy_mode.type_name != "transparent":
            return
        name = flow.request.pretty_host
        if name and name != flow.request.host:
            flow.request.data.host = name  # headers untouched: they already say `name`
