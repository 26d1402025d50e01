"""Lifecycle: check the listeners came up, announce them, keep the chain head visible.

The chain head (seq and HMAC of the last line) is printed at start, every
`head_every` seconds and at exit, so a copy lives outside the logs directory:
with it, even a truncated journal tail can be noticed.
"""

import asyncio
import sys
import time

from mitmproxy import ctx

from agentlog import records
from agentlog.ids import new_id
from agentlog.journal.writer import JournalWriter


def _format(addr: tuple) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Lifecycle:
    def __init__(
        self, writer: JournalWriter, session: str, ca_line: str, head_every: float = 60.0
    ) -> None:
        self.writer = writer
        self.session = session
        self.ca_line = ca_line
        self.head_every = head_every
        self.failure: str | None = None
        self.serving = False
        self._ticker: asyncio.Task | None = None

    def _say(self, text: str) -> None:
        print(f"agentlog proxy: {text}", file=sys.stderr, flush=True)

    def _say_head(self) -> None:
        seq, mac = self.writer.head
        self._say(f"journal head seq={seq} hmac={mac}")

    async def running(self) -> None:
        servers = list(ctx.master.addons.get("proxyserver").servers)
        broken = [s for s in servers if not s.is_running]
        if broken:
            s = broken[0]
            reason = getattr(s.last_exception, "strerror", None) or str(s.last_exception)
            self.failure = (
                f"cannot listen for {s.mode.type_name} mode ({s.mode.full_spec}): {reason}"
            )
            ctx.master.shutdown()
            return
        listening = ", ".join(
            f"{_format(addr)} ({s.mode.type_name})" for s in servers for addr in s.listen_addrs
        )
        self.writer.append(
            records.journal_event(
                id=new_id(),
                session=self.session,
                ts=time.time(),
                action="start",
                listening=listening,
                recovered_torn_bytes=self.writer.torn_bytes,
            )
        )
        self.serving = True
        self._say(f"listening on {listening}")
        self._say(self.ca_line)
        self._say_head()
        self._ticker = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.head_every)
            self._say_head()

    async def done(self) -> None:
        if self._ticker is None:
            return
        self._ticker.cancel()
        self.writer.append(
            records.journal_event(id=new_id(), session=self.session, ts=time.time(), action="stop")
        )
