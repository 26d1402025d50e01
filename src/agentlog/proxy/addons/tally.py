"""Tally: what the guards cut off or refused, as `connection` events, one per client a second.

A flood is thousands of small refusals; a journal line for each would hand the
journal's growth to the attacker (4,000 reset streams once wrote 6.5 MB). So
they are counted per client address and action, and each count is written
once a second at most: the journal grows with time, not with the attack.
"""

import asyncio
import time
from dataclasses import dataclass, field

from mitmproxy import connection

from agentlog import records
from agentlog.journal.sink import EventSink

EVERY = 1.0  # seconds between two events of one client and action


def client_address(client: connection.Client) -> str:
    """The address the limits count by: the client's host, without its port."""
    return str(client.peername[0]) if client.peername else ""


@dataclass(slots=True)
class _Count:
    since: float  # when the first one counted happened
    limit: float | None
    count: int = 0
    connections: set[str] = field(default_factory=set)


class Tally:
    def __init__(self, sink: EventSink, every: float = EVERY) -> None:
        self.sink = sink
        self.every = every
        self._counts: dict[tuple[str, str], _Count] = {}
        self._flush: asyncio.TimerHandle | None = None

    def add(
        self, client: connection.Client, action: str, limit: float | None, count: int = 1
    ) -> None:
        """Count `count` cut-offs (connections, or streams) of `client`'s; on the event loop."""
        key = (client_address(client), action)
        counted = self._counts.get(key)
        if counted is None:
            counted = self._counts[key] = _Count(time.time(), limit)
        counted.count += count
        counted.connections.add(client.id)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self.every, self.flush)

    def flush(self) -> None:
        """Write what was counted, one event per client and action."""
        self._flush = None
        counts, self._counts = self._counts, {}
        for (client, action), count in counts.items():
            self.sink.emit(
                records.connection_event,
                action=action,
                client=client,
                count=count.count,
                connections=len(count.connections),
                limit=count.limit,
                since=count.since,
            )

    def done(self) -> None:
        """The proxy stops: write what is counted now. What the stop itself cuts off (the
        connections still open) is written at the next turn of the loop, while the journal
        is still open."""
        if self._flush is not None:
            self._flush.cancel()
        self.flush()
        self.every = 0.0
