"""Router: each connection dials what the Dialer decided, and nothing else.

For `--route HOST=ADDR:PORT` that is ADDR:PORT; with deny rules on addresses
it is the one address the name resolved to and the policy judged (a denied
one refuses the connection); otherwise it is the name, spelled canonically.
The record, the Host header and the upstream TLS name (SNI, certificate
check) all stay the name; only the TCP connect goes to the address. The
address is put back once connected so that mitmproxy still reuses the
connection for the next request to the name.
"""

from collections.abc import Coroutine

from mitmproxy import connection
from mitmproxy.proxy import server_hooks

from agentlog.hosts import HostError
from agentlog.proxy.addons.policy_gate import refusal
from agentlog.proxy.dialer import Dialer


class Router:
    def __init__(self, dialer: Dialer) -> None:
        self.dialer = dialer
        self._original: dict[str, tuple[str, int]] = {}

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> Coroutine | None:
        """Sync unless addresses are judged: then mitmproxy awaits the lookup."""
        server = data.server
        if server.address is None or server.error:
            return None
        if self.dialer.judges_addresses:
            return self._connect_judged(server)
        try:
            name, target = self.dialer.target(*server.address, server.sni)
        except HostError as e:
            server.error = f"agentlog: refused {server.address[0]!r}: {e}"
            return None
        self._dial(server, name, target)
        return None

    async def _connect_judged(self, server: connection.Server) -> None:
        assert server.address is not None  # checked by server_connect
        host, port = server.address
        try:
            plan = await self.dialer.plan(host, port, server.sni)
        except HostError as e:
            server.error = f"agentlog: refused {host!r}: {e}"
            return
        except OSError as e:
            server.error = f"cannot resolve {host}: {e.strerror or e}"
            return
        if not plan.decision.allowed:
            server.error = refusal(plan.name, port, plan.decision)
            return
        self._dial(server, plan.name, plan.target)

    def _dial(self, server: connection.Server, name: str, target: tuple[str, int]) -> None:
        if target == server.address:
            return
        if server.sni is None and server.tls:
            server.sni = name
        assert server.address is not None  # server_connect only routes addressed servers
        self._original[server.id] = server.address
        server.address = target

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        original = self._original.pop(data.server.id, None)
        if original is not None:
            # mitmproxy forbids moving an open connection (Server.__setattr__ raises);
            # this only puts back the name it was opened for, so it is reused for HOST.
            object.__setattr__(data.server, "address", original)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._original.pop(data.server.id, None)
