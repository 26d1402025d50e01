"""FakeUpstream: an HTTPS + HTTP origin server on 127.0.0.1 for tests and benchmarks.

Four listening ports, all on 127.0.0.1:

* ``port``             TLS, ALPN ``h2`` + ``http/1.1`` (hypercorn, see ``app.py``)
* ``plain_port``       the same app without TLS (HTTP/1.1, h2c)
* ``reset_port``       TLS, HTTP/1.1 only: every request ends in a TCP RST (``reset.py``)
* ``reset_plain_port`` the same without TLS

In-process use (background thread with its own asyncio loop)::

    with FakeUpstream.from_ca(ca, tmp_path) as upstream:
        httpx.get(upstream.url("/hello", host="127.0.0.1"), verify=...)

Standalone (prints one JSON line with the ports, runs until SIGINT/SIGTERM)::

    python -m tests.fakes.upstream --cert C --key K --port P
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import ssl
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from hypercorn.asyncio import serve
from hypercorn.config import Config

from tests.fakes.app import UpstreamApp
from tests.fakes.certs import CA, issue_leaf
from tests.fakes.reset import start_reset_server

DEFAULT_NAMES = ("upstream.test", "api.fake.test", "localhost", "127.0.0.1")
_HOST = "127.0.0.1"
_START_TIMEOUT = 10.0


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((_HOST, port))
    sock.listen(128)  # connections queue from here on, before the server loop accepts
    sock.setblocking(False)
    return sock


class _AbortableLoop(asyncio.SelectorEventLoop):
    """Remembers the transport of every connection its servers accept, so that stop()
    can abort them all. hypercorn alone would wait on Python >= 3.12 for open
    WebSockets, and for idle TLS clients to answer close_notify (hypercorn#308, #202).
    """

    def __init__(self) -> None:
        super().__init__()
        self._accepted: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()

    async def create_server(
        self, protocol_factory: Callable[[], asyncio.BaseProtocol], *args: Any, **kwargs: Any
    ) -> asyncio.Server:
        def tracking_factory() -> asyncio.BaseProtocol:
            protocol = protocol_factory()
            connection_made = protocol.connection_made

            def track(transport: asyncio.BaseTransport) -> None:
                self._accepted.add(transport)
                connection_made(transport)

            protocol.connection_made = track  # type: ignore[method-assign]
            return protocol

        return await super().create_server(tracking_factory, *args, **kwargs)

    def abort_connections(self) -> None:
        for transport in list(self._accepted):
            transport.abort()  # type: ignore[attr-defined]


class FakeUpstream:
    """See the module docstring. Ports are 0 until ``start()`` binds them.

    ``hits[path]`` counts requests per path (no query) on every port.
    SSE gate: ``/sse?n=N`` sets ``sse_first_sent`` and sends ``data: 0`` (so the flag
    is always set by the time a client has read event 0), then waits
    for ``release_sse()`` before sending events 1..N-1; ``arm_sse()`` closes the
    gate again and clears ``sse_first_sent``. It starts closed when ``sse_gated``
    is true (the default) and open otherwise; ``hold_ms=M`` bypasses it.
    """

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        *,
        port: int = 0,
        plain_port: int = 0,
        reset_port: int = 0,
        reset_plain_port: int = 0,
        sse_gated: bool = True,
    ) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self.port, self.plain_port = port, plain_port
        self.reset_port, self.reset_plain_port = reset_port, reset_plain_port
        self.hits: Counter[str] = Counter()
        self.sse_first_sent = threading.Event()
        self._sse_gate = asyncio.Event()
        if not sse_gated:
            self._sse_gate.set()
        self._shutdown = asyncio.Event()
        self._loop: _AbortableLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @classmethod
    def from_ca(
        cls, ca: CA, directory: Path, names: Sequence[str] = DEFAULT_NAMES, **kwargs: Any
    ) -> FakeUpstream:
        """Issue a leaf for ``names`` from ``ca``, write it to ``directory``, build the server."""
        cert_file, key_file = issue_leaf(ca, list(names)).write(Path(directory), "upstream")
        return cls(cert_file, key_file, **kwargs)

    def url(self, path: str = "/", *, host: str = "upstream.test", tls: bool = True) -> str:
        if tls:
            return f"https://{host}:{self.port}{path}"
        return f"http://{host}:{self.plain_port}{path}"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        if self._loop is not None:
            raise RuntimeError("a FakeUpstream can be started only once")
        reset_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        reset_tls.load_cert_chain(self.cert_file, self.key_file)  # also fails early on bad files
        reset_tls.set_alpn_protocols(["http/1.1"])
        socks = [
            _listen(p) for p in (self.port, self.plain_port, self.reset_port, self.reset_plain_port)
        ]
        self.port, self.plain_port, self.reset_port, self.reset_plain_port = (
            s.getsockname()[1] for s in socks
        )
        config = Config()
        config.certfile, config.keyfile = str(self.cert_file), str(self.key_file)
        config.bind = [f"fd://{socks[0].detach()}"]  # hypercorn takes ownership of the fds
        config.insecure_bind = [f"fd://{socks[1].detach()}"]
        config.loglevel = "WARNING"  # no "Running on ..." lines; app errors still show
        self._loop = _AbortableLoop()
        self._thread = threading.Thread(
            target=self._run,
            args=(config, socks[2], socks[3], reset_tls),
            name="FakeUpstream",
            daemon=True,
        )
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT) or self._error is not None:
            raise RuntimeError("FakeUpstream failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._abort_everything)
            self._thread.join(_START_TIMEOUT)
            if self._thread.is_alive():
                raise RuntimeError("FakeUpstream did not stop")
        self._thread = None

    def _abort_everything(self) -> None:
        """On the loop: stop listening and drop every connection, without waiting for peers."""
        assert self._loop is not None
        self._shutdown.set()
        self._loop.abort_connections()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- SSE gate ----------------------------------------------------------

    def arm_sse(self) -> None:
        """Close the gate: the next /sse streams stop after event 0 until ``release_sse()``."""
        self._in_loop(self._sse_gate.clear)
        self.sse_first_sent.clear()

    def release_sse(self) -> None:
        self._in_loop(self._sse_gate.set)

    def _in_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the server loop and wait for it (asyncio.Event is not thread-safe)."""
        if self._loop is None or self._thread is None:
            fn()
            return

        async def call() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(call(), self._loop).result(_START_TIMEOUT)

    # -- server thread -----------------------------------------------------

    def _run(
        self,
        config: Config,
        reset_sock: socket.socket,
        reset_plain_sock: socket.socket,
        reset_tls: ssl.SSLContext,
    ) -> None:
        assert self._loop is not None
        try:
            self._loop.run_until_complete(
                self._serve(config, reset_sock, reset_plain_sock, reset_tls)
            )
        except BaseException as error:  # reported by start() if it happens before ready
            self._error = error
            raise
        finally:
            self._ready.set()
            self._loop.close()

    async def _serve(
        self,
        config: Config,
        reset_sock: socket.socket,
        reset_plain_sock: socket.socket,
        reset_tls: ssl.SSLContext,
    ) -> None:
        reset_servers = [
            await start_reset_server(reset_sock, self.hits, reset_tls),
            await start_reset_server(reset_plain_sock, self.hits, None),
        ]
        app = UpstreamApp(self.hits, self.sse_first_sent, self._sse_gate)
        self._ready.set()
        try:
            await serve(app, config, shutdown_trigger=self._shutdown.wait)  # type: ignore[arg-type]
        finally:
            for server in reset_servers:
                server.close()  # its connections were aborted by _abort_everything
                await server.wait_closed()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cert", type=Path, required=True, help="PEM leaf certificate")
    parser.add_argument("--key", type=Path, required=True, help="PEM private key of the leaf")
    parser.add_argument("--port", type=int, default=0, help="TLS port (0: pick a free one)")
    parser.add_argument("--plain-port", type=int, default=0)
    parser.add_argument("--reset-port", type=int, default=0)
    parser.add_argument("--reset-plain-port", type=int, default=0)
    args = parser.parse_args(argv)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # inherited by the server thread
    upstream = FakeUpstream(
        args.cert,
        args.key,
        port=args.port,
        plain_port=args.plain_port,
        reset_port=args.reset_port,
        reset_plain_port=args.reset_plain_port,
        sse_gated=False,  # standalone: /sse never waits unless ?hold_ms=M is given
    )
    with upstream:
        ports = {
            "port": upstream.port,
            "plain_port": upstream.plain_port,
            "reset_port": upstream.reset_port,
            "reset_plain_port": upstream.reset_plain_port,
        }
        print(json.dumps(ports), flush=True)
        signal.sigwait(stop_signals)


if __name__ == "__main__":
    main()
