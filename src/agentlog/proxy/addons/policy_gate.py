"""--allow / --deny: refuse what the policy refuses, before anything is dialled.

Requests are judged by the name the agent asked for and answered with a 403
that names agentlog and the rule; so is a CONNECT, by the target it names,
before any 200. Connections that carry no HTTP request (a raw TCP relay) are
judged at their start, for the record, and again when mitmproxy is about to dial.
"""

import functools

from mitmproxy import http, tcp
from mitmproxy.proxy import server_hooks

from agentlog.policy import Decision, Policy

DECISION = "agentlog.decision"


def refusal(host: str, port: int, decision: Decision) -> str:
    return f"agentlog: blocked {host}:{port} by policy ({decision.reason})"


def forbidden(host: str, port: int, decision: Decision) -> http.Response:
    return http.Response.make(
        403,
        refusal(host, port, decision) + "\n",
        {"content-type": "text/plain; charset=utf-8", "x-agentlog": "blocked"},
    )


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

    def http_connect(self, flow: http.HTTPFlow) -> None:
        # Answered before mitmproxy says 200: a refused tunnel is never opened.
        host, port = flow.request.host, flow.request.port
        decision = self._decide(host, port)
        flow.metadata[DECISION] = decision
        if not decision.allowed:
            flow.response = forbidden(host, port, decision)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        # The decision the record states; server_connect below enforces the same one.
        server = flow.server_conn
        if server.address is not None:
            host, port = server.sni or server.address[0], server.address[1]
            flow.metadata[DECISION] = self._decide(host, port)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        if server.address is None:
            return
        host, port = server.sni or server.address[0], server.address[1]
        decision = self._decide(host, port)
        if not decision.allowed:
            server.error = refusal(host, port, decision)
