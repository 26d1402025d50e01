"""--allow / --deny: refuse what the policy refuses, before anything is dialled.

Requests are judged by the names the agent asked for, in their canonical
spelling (`0x7f000001` is 127.0.0.1, `EVIL.com.` is evil.com), and, when
there are deny rules on addresses, by the address the Dialer will connect
to (a name resolving to a denied address is refused, and the refusal says
which address). A refusal is a 403 that names agentlog and the rule; so is a
CONNECT, by the target it names, before any 200. Connections that carry no
HTTP request (a raw TCP relay) are judged at their start, for the record, and
again when mitmproxy is about to dial.
"""

import functools
from collections.abc import Coroutine

from mitmproxy import http, tcp
from mitmproxy.proxy import server_hooks

from agentlog.hosts import host_forms
from agentlog.policy import Decision, Policy
from agentlog.proxy.dialer import Dialer

DECISION = "agentlog.decision"


def refusal(host: str, port: int, decision: Decision) -> str:
    return f"agentlog: blocked {host_forms(host)[0]}:{port} by policy ({decision.reason})"


def forbidden(host: str, port: int, decision: Decision) -> http.Response:
    return http.Response.make(
        403,
        refusal(host, port, decision) + "\n",
        {"content-type": "text/plain; charset=utf-8", "x-agentlog": "blocked"},
    )


class PolicyGate:
    def __init__(self, policy: Policy, dialer: Dialer | None = None) -> None:
        self.dialer = dialer or Dialer(policy, {})
        self._decide = functools.lru_cache(maxsize=4096)(policy.decide)

    def requestheaders(self, flow: http.HTTPFlow) -> Coroutine | None:
        """Sync, unless an address is judged that needs a lookup: mitmproxy awaits it."""
        # The name dialled and the name in the Host header can differ (a CONNECT to
        # one host, a Host header naming another): both must pass.
        port = flow.request.port
        for host in dict.fromkeys((flow.request.host, flow.request.pretty_host)):
            decision = self._decide(host, port)
            if not decision.allowed:
                break
        if decision.allowed and self.dialer.judges_addresses:
            plan = self.dialer.plan_now(flow.request.host, port)
            if plan is None:
                return self._judge_address(flow)
            host, decision = plan.name, plan.decision
        self._conclude(flow, host, port, decision)
        return None

    async def _judge_address(self, flow: http.HTTPFlow) -> None:
        host, port = flow.request.host, flow.request.port
        try:
            plan = await self.dialer.plan(host, port)
        except OSError:
            return self._conclude(flow, host, port, Decision(True, None))  # the connect fails
        self._conclude(flow, plan.name, port, plan.decision)

    def _conclude(self, flow: http.HTTPFlow, host: str, port: int, decision: Decision) -> None:
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
