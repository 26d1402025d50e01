"""The two TCP legs of a flow, as the journal names them: agent<->proxy, proxy<->upstream."""

from mitmproxy import flow


def address(addr: tuple | None) -> str | None:
    if not addr:
        return None
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def agent_dst(f: flow.Flow) -> str | None:
    """Where the agent's packets were addressed: our listener, or (redirected) the
    destination it dialled. With the client's address, this names the agent leg."""
    if f.client_conn.proxy_mode.type_name == "transparent":
        return address(f.server_conn.address)
    return address(f.client_conn.sockname)


def upstream(f: flow.Flow) -> tuple[str | None, str | None]:
    """The proxy-to-upstream leg: our source address and the server's."""
    return address(f.server_conn.sockname), address(f.server_conn.peername)
