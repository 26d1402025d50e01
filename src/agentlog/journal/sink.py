"""EventSink: the journal as the proxy's addons see it.

The `records` builders stay pure: every value comes in as an argument. The
sink supplies the three every event needs (an `id`, the `session`, the time)
and hands the event to the writer, so no addon repeats them. It adds one call
per event and nothing else to the hot path.
"""

import time
from collections.abc import Callable, Mapping
from typing import Any

from agentlog.ids import new_id
from agentlog.journal.bodies import Body
from agentlog.journal.writer import JournalWriter


class EventSink:
    def __init__(self, writer: JournalWriter, session: str) -> None:
        self.writer = writer
        self.session = session

    def build[T](
        self,
        make: Callable[..., T],
        *,
        id: str | None = None,
        ts: float | None = None,
        **fields: Any,
    ) -> T:
        """`make(**fields)` stamped with `id` (a new one if None), the session and
        `ts` (now if None): whatever the builder returns."""
        return make(
            id=new_id() if id is None else id,
            session=self.session,
            ts=time.time() if ts is None else ts,
            **fields,
        )

    def emit(
        self,
        make: Callable[..., Mapping[str, object]],
        *,
        id: str | None = None,
        ts: float | None = None,
        bodies: dict[str, Body] | None = None,
        **fields: Any,
    ) -> None:
        """Build an event as `build` does and queue it for the journal."""
        self.writer.append(self.build(make, id=id, ts=ts, **fields), bodies)

    def append(self, event: Mapping[str, object], bodies: dict[str, Body] | None = None) -> None:
        """Queue an event already built (and perhaps completed) with `build`."""
        self.writer.append(event, bodies)

    async def write_ahead(
        self, event: Mapping[str, object], bodies: dict[str, Body] | None = None
    ) -> int:
        """Write `event` and return its seq once it is with the OS; JournalError if not."""
        return await self.writer.write_ahead(event, bodies)
