"""How the journal names where a flow went: the host it asked for, and the two TCP
legs, agent<->proxy and proxy<->upstream."""

from typing import TypedDict

from mitmproxy import flow

from agentlog.hosts import host_forms


class Domain(TypedDict, total=False):
    domain: str | None
    domain_unicode: str | None


def domain(host: str | None) -> Domain:
    """The record's `domain` (canonical ASCII) and `domain_unicode` (where it differs)."""
    if host is None:
        return {"domain": None}
    ascii_form, shown = host_forms(host)
    return {"domain": ascii_form, "domain_unicode": shown}


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
