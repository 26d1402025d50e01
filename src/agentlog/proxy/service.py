"""RecordingProxy: the recording proxy as a service, for any asyncio program to run.

    async with RecordingProxy(config, logs) as proxy:
        listeners = await proxy.ready()  # StartupError if a listener or capture failed
        ...
        proxy.stop()                     # from a signal handler, say
        seq, mac = await proxy.wait()    # the journal complete, its final chain head

It starts the journal writer, capture (if configured) and mitmproxy, and stops
them in the reverse order. It installs no signal handlers, never exits the
process and speaks only through `announce` (by default "agentlog proxy: ..."
lines on stderr: the ready line, the CA, the chain head at start, every
`head_every` seconds and at exit, so a copy of it lives outside the logs
directory; any recovery of the journal, loudly). With a head file it keeps
that file updated with the head too. mitmproxy keeps global state: one per
process.
"""

import asyncio
import hmac
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from mitmproxy import master

from agentlog import ca, records
from agentlog.capture.supervisor import CaptureError, CaptureSupervisor
from agentlog.config import ProxyConfig
from agentlog.errors import StartupError
from agentlog.ids import new_id
from agentlog.journal import recovery
from agentlog.journal.headfile import HeadFile
from agentlog.journal.recovery import JournalCutError
from agentlog.journal.sink import EventSink
from agentlog.journal.writer import JournalWriter
from agentlog.logsdir import LogsDir, read_or_create_key
from agentlog.proxy import app
from agentlog.proxy.addons.lifecycle import Lifecycle, Listener
from agentlog.redact import Redactor

__all__ = ["Listener", "RecordingProxy", "StartupError", "announce_on_stderr"]

HEAD_EVERY = 60.0
HEAD_FILE_EVERY = 1.0
# At stop, open exchanges are cut and get this long to be recorded as errors.
CLOSE_GRACE = 5.0


def announce_on_stderr(text: str) -> None:
    print(f"agentlog proxy: {text}", file=sys.stderr, flush=True)


def _mark_retrieved(future: asyncio.Future) -> None:
    """A failure someone may never await is not 'never retrieved': it is also raised elsewhere."""
    if not future.cancelled():
        future.exception()


class RecordingProxy:
    def __init__(
        self,
        config: ProxyConfig,
        logs: LogsDir,
        announce: Callable[[str], None] = announce_on_stderr,
        head_every: float = HEAD_EVERY,
    ) -> None:
        self.config = config
        self.logs = logs
        self.session = config.session or new_id()
        self.listeners: list[Listener] = []  # once ready: the addresses actually bound
        self.head: tuple[int, str] | None = None  # once stopped: the final (seq, HMAC)
        self._announce = announce
        self._head_every = head_every
        self._stopping = False
        self._failure: str | None = None
        self._master: master.Master | None = None
        self._sink: EventSink | None = None
        self._ticker: asyncio.Task | None = None
        self._head_file_task: asyncio.Task | None = None
        self._head_file_error: str | None = None
        self._ready: asyncio.Future[list[Listener]] | None = None
        self._task: asyncio.Task | None = None

    # -- the service ------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._ready = asyncio.get_running_loop().create_future()
        self._ready.add_done_callback(_mark_retrieved)
        self._task = asyncio.create_task(self._run(), name="agentlog proxy")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc is None:
            await self.wait()
            return
        assert self._task is not None
        await asyncio.wait([self._task])  # stopped cleanly; the body's exception is the news
        _mark_retrieved(self._task)

    async def ready(self) -> list[Listener]:
        """The listeners, once every one is up; StartupError if the proxy cannot start."""
        assert self._ready is not None, "use `async with RecordingProxy(...)`"
        return await asyncio.shield(self._ready)

    def record(self, make: Callable[..., Mapping[str, object]], **fields: Any) -> None:
        """Write an event of another service (a `bypass`, say) into this journal,
        stamped and chained like the proxy's own: once ready, until `wait` returns."""
        assert self._sink is not None and self.head is None, "the journal is not open"
        self._sink.emit(make, **fields)

    def stop(self) -> None:
        """Ask the proxy to stop (at any time, any number of times); `wait` for it."""
        self._stopping = True
        if self._master is not None:
            self._master.shutdown()

    async def wait(self) -> tuple[int, str]:
        """Once stopped: the journal complete, capture ended. The final chain head."""
        assert self._task is not None, "use `async with RecordingProxy(...)`"
        await asyncio.shield(self._task)
        assert self.head is not None
        return self.head

    # -- start and stop ---------------------------------------------------

    async def _run(self) -> None:
        assert self._ready is not None
        try:
            await self._serve()
        except Exception as e:
            if not self._ready.done():
                self._ready.set_exception(e)
            raise
        finally:
            if not self._ready.done():
                self._ready.set_exception(StartupError("the proxy stopped before it was listening"))

    async def _serve(self) -> None:
        config, logs = self.config, self.logs
        logs.prepare()
        ca.ensure_ca(logs)
        head_file = HeadFile(config.head_file, logs.root) if config.head_file else None
        key_path = config.journal_key or logs.journal_key
        key_existed = key_path.exists()
        journal_key = read_or_create_key(key_path)
        # Fingerprints use a key of their own, derived from the journal key.
        fingerprint_key = hmac.digest(journal_key, b"agentlog redaction fingerprint", "sha256")
        redactor = Redactor(fingerprint_key if config.fingerprint else None)
        writer = JournalWriter(logs, journal_key, redactor, config.body_cap)
        try:
            self._recover(writer, head_file, existed=key_existed and config.journal_key is None)
        except BaseException:
            writer.close()
            self._forget_unused_key(writer, key_path, key_existed)
            raise
        writer.start()
        sink = self._sink = EventSink(writer, self.session)
        if head_file is not None:
            self._head_file_task = asyncio.create_task(self._keep_head_file(head_file))
        # Before mitmproxy makes its first TLS context; a failing keys.log is journaled.
        keylog = app.log_tls_keys(
            logs.keylog,
            lambda action, **fields: sink.emit(records.journal_event, action=action, **fields),
        )
        capture = None
        if config.capture is not None:
            capture = CaptureSupervisor(
                logs,
                config.capture,
                lambda action, **fields: sink.emit(records.capture_event, action=action, **fields),
            )
        try:
            if capture is not None:  # before listening: never run half-blind
                try:
                    await capture.start()
                except CaptureError as e:
                    raise StartupError(str(e)) from e
            if not self._stopping:
                await self._run_mitmproxy(sink, redactor, capture)
        finally:
            await self._shut_down(sink, capture, head_file)
            self._forget_unused_key(writer, key_path, key_existed)
            keylog.close()

    def _recover(self, writer: JournalWriter, head_file: HeadFile | None, existed: bool) -> None:
        """Make the journal whole before anything is written, and say loudly what was wrong.
        A journal that lost whole lines is refused unless the config accepts it."""
        try:
            event = writer.recover(
                self.session,
                existed=existed,
                known_head=head_file.read() if head_file else None,
                accept_cut=self.config.accept_cut_journal,
            )
        except JournalCutError as e:
            raise StartupError(
                f"{e}; see `agentlog verify`, or start with --accept-cut-journal to go on"
                " (the loss is recorded)"
            ) from e
        if event is not None:
            self._announce(f"WARNING: {recovery.describe(event)}")
        if head_file is not None:
            try:
                head_file.write(writer.head)
            except OSError as e:
                raise StartupError(f"cannot write head file {head_file.path}: {e.strerror}") from e

    @staticmethod
    def _forget_unused_key(writer: JournalWriter, key_path: Path, key_existed: bool) -> None:
        """A key made by a start that wrote nothing goes again: a journal key in the logs
        directory means lines were written, so an empty journal beside it is a loss."""
        if not key_existed and writer.head[0] == 0:
            key_path.unlink(missing_ok=True)

    async def _shut_down(
        self, sink: EventSink, capture: CaptureSupervisor | None, head_file: HeadFile | None
    ) -> None:
        """After mitmproxy: capture, then the journal's own `stop` (its last line), then the
        writer, so the head printed (and kept in the head file) is final."""
        served = self._ticker is not None
        if self._ticker is not None:
            self._ticker.cancel()
        if self._head_file_task is not None:
            self._head_file_task.cancel()
        try:
            if capture is not None:
                await capture.stop()
        finally:
            if served:
                sink.emit(records.journal_event, action="stop")
            sink.writer.close()
            self.head = sink.writer.head
            if head_file is not None:
                try:
                    head_file.write(self.head)
                except OSError as e:
                    self._head_file_failed(head_file, e)
            if served:
                seq, mac = self.head
                self._announce(f"stopped; journal head seq={seq} hmac={mac}")

    async def _run_mitmproxy(
        self, sink: EventSink, redactor: Redactor, capture: CaptureSupervisor | None
    ) -> None:
        proxy = self._master = app.build_master(
            self.config,
            self.logs,
            sink,
            redactor,
            Lifecycle(self._listening, self._failed),
            capture.file_for if capture else None,
        )
        try:
            await proxy.run()  # until stop(), or a listener failed
        finally:
            await self._end_exchanges(proxy)
        if self._failure is not None:
            raise StartupError(self._failure)

    def _listening(self, listeners: list[Listener]) -> None:
        """mitmproxy's `running`: every listener is up. Runs before anyone is served."""
        assert self._sink is not None and self._ready is not None
        listening = ", ".join(map(str, listeners))
        self._sink.emit(
            records.journal_event,
            action="start",
            listening=listening,
            recovered_torn_bytes=self._sink.writer.torn_bytes,
        )
        self.listeners = listeners
        self._announce(f"listening on {listening}")
        self._announce(f"CA {self.logs.ca_cert} SHA-256 {ca.fingerprint(self.logs.ca_cert)}")
        self._announce_head()
        self._ticker = asyncio.create_task(self._tick())
        self._ready.set_result(listeners)

    def _failed(self, reason: str) -> None:
        self._failure = reason
        self.stop()

    async def _end_exchanges(self, proxy: master.Master) -> None:
        """Listen no more, cut the agent's open connections and give their exchanges a
        moment to be recorded (an `error` event each) while the journal is still open."""
        proxyserver = proxy.addons.get("proxyserver")
        for server in proxyserver.servers:
            if server.is_running:
                await server.stop()
        for handler in list(proxyserver.connections.values()):
            if handler.client in handler.transports:
                handler.close_connection(handler.client)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_GRACE
        while proxyserver.connections and loop.time() < deadline:
            await asyncio.sleep(0.01)

    def _announce_head(self) -> None:
        assert self._sink is not None
        seq, mac = self._sink.writer.head
        self._announce(f"journal head seq={seq} hmac={mac}")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._head_every)
            self._announce_head()

    async def _keep_head_file(self, head_file: HeadFile) -> None:
        """The head file follows the head, at most every HEAD_FILE_EVERY seconds. A write
        still in its thread when this is cancelled finishes; HeadFile never lets it put
        back an older head than the final one written at stop."""
        assert self._sink is not None
        written = None
        while True:
            await asyncio.sleep(HEAD_FILE_EVERY)
            head = self._sink.writer.head
            if head != written:
                try:
                    await asyncio.to_thread(head_file.write, head)
                except OSError as e:
                    self._head_file_failed(head_file, e)
                else:
                    written, self._head_file_error = head, None

    def _head_file_failed(self, head_file: HeadFile, e: OSError) -> None:
        if self._head_file_error != e.strerror:  # once per kind of failure, not every second
            self._head_file_error = e.strerror
            self._announce(f"WARNING: cannot write head file {head_file.path}: {e.strerror}")
