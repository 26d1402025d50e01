"""--allow / --deny: refuse what the policy refuses, before anything is dialled.

Requests are judged by the name the agent asked for and answered with a 403
that names agentlog and the rule. Connections that carry no HTTP request
(a raw TCP tunnel, say) are judged again when mitmproxy is about to dial.
"""

import functools

from mitmproxy import http
from mitmproxy.proxy import server_hooks

from agentlog.policy import Decision, Policy

DECISION = "agentlog.decision"


def refusal(host: str, port: int, decision: Decision) -> str:
    return f"agentlog: blocked {host}:{port} by policy ({decision.reason})"


class PolicyGate:
    def __init__(self, policy: Policy) -> None:
        self._decide = functools.lru_cache(maxsize=4096)(policy.decide)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # The name dialled and the name in the Host header can differ (a CONNECT to
        # one host, a Host header naming another): both must pass.
        port = flow.request.port
        for host in dict.fromkeys((flow.request.host, flow.request.pretty_host)):
            decision = self._decide(host, port)
            if not decision.allowed:
                break
        flow.metadata[DECISION] = decision
        if not decision.allowed:
            flow.response = http.Response.make(
                403,
                refusal(host, port, decision) + "\n",
                {"content-type": "text/plain; charset=utf-8", "x-agentlog": "blocked"},
            )

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        if server.address is None:
            return
        host, port = server.sni or server.address[0], server.address[1]
        decision = self._decide(host, port)
        if not decision.allowed:
            server.error = refusal(host, port, decision)
