"""Lifecycle: at mitmproxy's `running`, report which listeners came up, or why one did not.

mitmproxy logs a listener that failed to bind and runs on without it; a
recording proxy missing a listener must not start at all. The report is made
inside the hook, before mitmproxy serves anyone, so the journal's `start`
event comes before the first request.
"""

from collections.abc import Callable
from dataclasses import dataclass

from mitmproxy import ctx


@dataclass(frozen=True)
class Listener:
    """An address the proxy listens on; port 0 in the config is the real port here."""

    mode: str  # "regular", "transparent" or "dns"
    host: str
    port: int

    def __str__(self) -> str:  # the form the ready line and the `start` event use
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port} ({self.mode})"


class Lifecycle:
    def __init__(
        self, listening: Callable[[list[Listener]], None], failed: Callable[[str], None]
    ) -> None:
        self.listening = listening
        self.failed = failed

    def running(self) -> None:
        servers = list(ctx.master.addons.get("proxyserver").servers)
        for s in servers:
            if not s.is_running:
                reason = getattr(s.last_exception, "strerror", None) or str(s.last_exception)
                self.failed(
                    f"cannot listen for {s.mode.type_name} mode ({s.mode.full_spec}): {reason}"
                )
                return
        # dict.fromkeys: a DNS listener is a TCP and a UDP socket on one address.
        self.listening(
            list(
                dict.fromkeys(
                    Listener(s.mode.type_name, addr[0], addr[1])
                    for s in servers
                    for addr in s.listen_addrs
                )
            )
        )
