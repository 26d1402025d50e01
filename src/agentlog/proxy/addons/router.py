"""--route HOST=ADDR:PORT: dial ADDR:PORT for HOST, keep HOST everywhere else.

The record, the Host header and the upstream TLS name (SNI, certificate
check) all stay HOST; only the TCP connect goes elsewhere. The address is
put back once connected so that mitmproxy still reuses the connection for
the next request to HOST.
"""

from mitmproxy.proxy import server_hooks


class Router:
    def __init__(self, routes: dict[str, tuple[str, int]]) -> None:
        self.routes = routes
        self._original: dict[str, tuple[str, int]] = {}

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        if server.address is None or server.error:
            return
        name = (server.sni or server.address[0]).lower()
        target = self.routes.get(name)
        if target is None:
            return
        if server.sni is None and server.tls:
            server.sni = name
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
