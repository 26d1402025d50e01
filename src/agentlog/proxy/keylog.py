"""keys.log, written so that a failed write never raises inside OpenSSL.

mitmproxy's own key logger (mitmproxy.net.tls.MasterSecretLogger) raises from
OpenSSL's keylog callback when the disk is full: a traceback on stderr for every
handshake, the secrets lost, the journal none the wiser. KeyLog takes its place:
each line goes out with one write(2) and a failed write is cut back, so keys.log
only ever holds whole lines; the first failure of an outage becomes a journal
event, and so does the recovery, once writes succeed again.
"""

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentlog.logsdir import SECRET_MODE
from agentlog.timefmt import rfc3339

# note(action, **fields): record a journal event about keys.log (never raises).
Note = Callable[..., None]


@dataclass
class _Outage:
    since: float
    error: str
    lost_lines: int = 0


class KeyLog:
    """The NSS key log of both TLS legs; mitmproxy calls it for every secret."""

    __name__ = "KeyLog"  # pyOpenSSL wraps the callback with functools.wraps

    def __init__(self, path: Path, note: Note) -> None:
        self.path = path
        self._note = note
        self._lock = threading.Lock()  # OpenSSL may call from any thread
        self._fd = -1
        self._size = 0  # keys.log's length after the last whole line
        self._glued = False  # the file ends mid-line: start the next line afresh
        self.outage: _Outage | None = None

    def install(self) -> None:
        """Make mitmproxy hand every TLS secret (QUIC's too) to this instead of its own
        logger; before any TLS context exists, as mitmproxy reads it per new context."""
        from mitmproxy.net import tls

        tls.log_master_secret = self  # type: ignore[assignment]

    def __call__(self, connection: object, keymaterial: bytes) -> None:
        with self._lock:
            try:
                self._write(keymaterial + b"\n")
            except OSError as e:
                self._failed(e)
                return
            if self.outage is not None:
                self._recovered(self.outage)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _write(self, line: bytes) -> None:
        if self._fd < 0:
            self._open()
        data = b"\n" + line if self._glued else line
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError:
            if written:  # no half line left behind (the journal writer does the same)
                try:
                    os.ftruncate(self._fd, self._size)
                except OSError:
                    self._glued = True
            raise
        self._size += len(data)
        self._glued = False

    def _open(self) -> None:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, SECRET_MODE)
        self._size = os.fstat(self._fd).st_size
        # A line cut short before (a crash mid-write) must not swallow the next one.
        self._glued = self._size > 0 and os.pread(self._fd, 1, self._size - 1) != b"\n"

    def _failed(self, error: OSError) -> None:
        if self.outage is None:
            reason = error.strerror or str(error)
            self.outage = _Outage(time.time(), reason)
            _say(f"keys.log write failed ({reason}); TLS secrets are being lost")
            self._note("keylog_failed", file=self.path.name, error=reason)
        self.outage.lost_lines += 1

    def _recovered(self, outage: _Outage) -> None:
        self.outage = None
        _say(f"keys.log writable again; {outage.lost_lines} line(s) of TLS secrets were lost")
        # Repeats what keylog_failed said: that event met the disk keys.log could not write.
        self._note(
            "keylog_recovered",
            file=self.path.name,
            error=outage.error,
            failed_since=rfc3339(outage.since),
            lost_lines=outage.lost_lines,
        )


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        print(f"agentlog proxy: {text}", file=sys.stderr, flush=True)
