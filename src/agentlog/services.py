"""The proxy and its companions as one supervised group: what `agentlog up` runs,
and what `agentlog run` runs around its command.

    async with Services(config, logs, ui=("127.0.0.1", 8000)) as services:
        services.watch_bypasses("agentlog_al1s1")  # once the firewall's table exists
        await services.wait(stop)                   # until `stop` is set; ServiceDied if
                                                    # a service ended on its own
    # stopped: UI, a last bypass poll, then the proxy (capture, journal `stop` event)

The services: the RecordingProxy (capture included: it restarts tcpdump
itself), the BypassPoller (reading the firewall's table and writing each
dropped flow as a `bypass` event, within a few seconds), and the web UI as a
child process. One of them ending stops them all, with ServiceDied saying which
and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from agentlog import records
from agentlog.config import ProxyConfig
from agentlog.errors import UserError
from agentlog.logsdir import LogsDir
from agentlog.sandbox.bypass import Bypass, BypassPoller

# A child asked to stop gets this long before it is killed.
STOP_GRACE = 5.0


class ServiceDied(UserError):
    """A supervised service ended on its own; everything else was stopped."""

    status = 1


def ui_command(logs: LogsDir, listen: tuple[str, int]) -> list[str]:
    """How `--ui HOST:PORT` starts the web UI: `agentlog ui`, a process of its own
    that only reads the logs directory."""
    host, port = listen
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    command = [sys.executable, "-m", "agentlog", "ui", "--logs", str(logs.root), "--listen", where]
    # If we are killed outright, the UI goes too rather than holding its port.
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *command] if setpriv else command


class Services:
    def __init__(
        self,
        config: ProxyConfig,
        logs: LogsDir,
        announce: Callable[[str], None] | None = None,
        ui: tuple[str, int] | None = None,
    ) -> None:
        from agentlog.proxy.service import RecordingProxy  # mitmproxy: imported when used

        self.proxy = (
            RecordingProxy(config, logs, announce) if announce else RecordingProxy(config, logs)
        )
        self.logs = logs
        self.ui_command = ui_command(logs, ui) if ui else None
        self.ui: asyncio.subprocess.Process | None = None
        self.poller: BypassPoller | None = None
        self._polling: asyncio.Task | None = None

    async def __aenter__(self) -> Self:
        await self.proxy.__aenter__()
        try:
            await self.proxy.ready()
            if self.ui_command:
                self.ui = await asyncio.create_subprocess_exec(
                    *self.ui_command,
                    start_new_session=True,  # the terminal's ^C is not for it
                )
        except BaseException as e:
            await self._stop_all(type(e), e, e.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop_all(exc_type, exc, tb)

    @property
    def listeners(self):  # noqa: ANN201 - the proxy's Listener list
        return self.proxy.listeners

    def watch_bypasses(self, table: str, every: float = 1.0) -> None:
        """Poll the firewall's table; each dropped flow becomes a `bypass` event."""
        self.poller = BypassPoller(table, self._record_bypass, every)
        self._polling = asyncio.create_task(self.poller.run(), name="bypass poller")

    def _record_bypass(self, bypass: Bypass) -> None:
        self.proxy.record(
            records.bypass_event,
            protocol=bypass.protocol,
            destination=bypass.destination,
            port=bypass.port,
            packets=bypass.packets,
            bytes=bypass.bytes,
        )

    async def wait(self, *until: Awaitable[object]) -> int:
        """Until one of `until` is done (its index returned), or ServiceDied if a service
        ended first."""
        watched: dict[asyncio.Future, str] = {asyncio.ensure_future(self.proxy.wait()): "the proxy"}
        if self._polling is not None:
            watched[self._polling] = "the bypass poller"
        if self.ui is not None:
            watched[asyncio.ensure_future(self.ui.wait())] = "the UI"
        awaited = [asyncio.ensure_future(a) for a in until]
        try:
            done, _ = await asyncio.wait([*watched, *awaited], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in watched:
                if future is not self._polling:
                    future.cancel()
        for i, future in enumerate(awaited):
            if future in done:
                return i
        future = next(f for f in watched if f in done)
        raise ServiceDied(f"{watched[future]} stopped ({_why(future)}); everything was stopped")

    async def _stop_all(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """The UI, a last look at what was dropped, then the proxy (journal complete)."""
        try:
            if self.ui is not None:
                await stop_child(self.ui)
            if self._polling is not None:
                self._polling.cancel()
                with contextlib.suppress(BaseException):
                    await self._polling
                if self.proxy.head is None:
                    with contextlib.suppress(UserError):  # the table may be gone
                        await self.poller.poll()  # type: ignore[union-attr]
        finally:
            await self.proxy.__aexit__(exc_type, exc, tb)


def _why(future: asyncio.Future) -> str:
    if future.cancelled():
        return "cancelled"
    if (e := future.exception()) is not None:
        return str(e) or type(e).__name__
    result = future.result()
    return f"exit status {result}" if isinstance(result, int) else "it ended"


async def stop_child(process: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> int:
    """Ask a child to stop, kill it if it takes more than STOP_GRACE seconds; its status."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    return await process.wait()
