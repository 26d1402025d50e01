"""FakeTcp: raw (non-HTTP, non-TLS) TCP services on 127.0.0.1, for tests of TCP relays.

Two listening ports:

* ``port``         echoes every byte back until the client half-closes, then closes
* ``hangup_port``  echoes the first chunk it reads, then closes first (the server hangs up)

``accepted[kind]`` counts connections per port ("echo", "hangup"): a test can
check that a refused relay never reached the service.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections import Counter
from types import TracebackType
from typing import Self

_HOST = "127.0.0.1"


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((_HOST, 0))
    sock.listen(128)
    return sock


class FakeTcp:
    def __init__(self) -> None:
        self.accepted: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._listeners = {"echo": _listen(), "hangup": _listen()}
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._stopping = False

    @property
    def port(self) -> int:
        return self._listeners["echo"].getsockname()[1]

    @property
    def hangup_port(self) -> int:
        return self._listeners["hangup"].getsockname()[1]

    def start(self) -> None:
        for kind, listener in self._listeners.items():
            thread = threading.Thread(target=self._accept, args=(kind, listener), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping = True
        for listener in self._listeners.values():
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for conn in list(self._open):
                conn.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        self.stop()

    def _accept(self, kind: str, listener: socket.socket) -> None:
        serve = self._echo if kind == "echo" else self._hangup
        while not self._stopping:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.accepted[kind] += 1
                self._open.add(conn)
            threading.Thread(target=self._serve, args=(serve, conn), daemon=True).start()

    def _serve(self, serve, conn: socket.socket) -> None:
        try:
            with conn:
                serve(conn)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(conn)

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        """Reads on whether or not its writes are taken: a peer that stops reading while
        its own sends are blocked can deadlock mitmproxy's relay (server.py drains every
        writer after each read), which is not what these tests are about."""
        pending: queue.SimpleQueue[bytes] = queue.SimpleQueue()

        def send() -> None:
            while chunk := pending.get():
                conn.sendall(chunk)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            while chunk := conn.recv(65536):
                pending.put(chunk)
        finally:
            pending.put(b"")
            sender.join()

    @staticmethod
    def _hangup(conn: socket.socket) -> None:
        if chunk := conn.recv(65536):
            conn.sendall(chunk)
