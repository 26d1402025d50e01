"""What the addon unit tests share: hooks run the way mitmproxy runs them, on
mitmproxy's own test context (mitmproxy.test.taddons), and a real journal on a
temporary logs directory, read back the way a user reads it."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mitmproxy import eventsequence, flow, hooks
from mitmproxy.test import taddons

from agentlog.journal import chain, reader
from agentlog.journal.sink import EventSink
from agentlog.journal.writer import JournalWriter
from agentlog.logsdir import LogsDir
from agentlog.redact import Redactor

KEY = b"k" * 32
SESSION = "01TESTSESSION0000000000000"


class Journal:
    """A real JournalWriter (its thread and all) writing requests.jsonl under `root`."""

    def __init__(self, root: Path) -> None:
        self.logs = LogsDir(root)
        self.logs.prepare()
        self.writer = JournalWriter(self.logs, KEY, Redactor())
        self.writer.start()
        self.sink = EventSink(self.writer, SESSION)
        self._open = True

    def on_disk(self) -> list[dict]:
        """The events in the file now, without waiting for the writer: what was written ahead."""
        return list(reader.events(self.logs.journal))

    def close(self) -> None:
        if self._open:
            self._open = False
            self.writer.close()  # drains everything appended

    def events(self) -> list[dict]:
        """Every event appended, once the writer has drained; the chain must verify."""
        self.close()
        lines = self.logs.journal.read_bytes().splitlines(keepends=True)
        assert chain.verify(lines, KEY).ok
        return list(reader.events(self.logs.journal))

    def kinds(self) -> list[str]:
        return [e["event"] for e in self.events()]

    def exchanges(self) -> list[dict]:
        """The exchanges `agentlog show` would merge from the journal, in order."""
        return list(reader.exchanges(self.events()).values())

    def body(self, ref: object) -> bytes | None:
        return reader.read_body(self.logs.root, ref)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def disk_full(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """From now on every write(2) to the file at `path` fails as on a full disk."""
    target = path.stat()
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


class Hooks:
    """Runs `addon`'s hooks as mitmproxy's AddonManager does (an awaitable a hook
    returns is awaited), on the event loop of mitmproxy's addon test context."""

    def __init__(self, tctx: taddons.context, addon: object) -> None:
        self.tctx = tctx
        self.addon = addon

    def __call__(self, *events: hooks.Hook) -> None:
        for event in events:
            self.complete(self.tctx.master.addons.invoke_addon(self.addon, event))

    def cycle(self, f: flow.Flow) -> None:
        """The flow's whole life, hook by hook (mitmproxy.eventsequence)."""
        for event in eventsequence.iterate(f):  # lazily: it feeds messages one by one
            self(event)

    def complete[T](self, work: Coroutine[object, object, T]) -> T:
        """Run `work` on the context's event loop until it is done."""
        return self.tctx.master.event_loop.run_until_complete(work)


@contextmanager
def addon_hooks(addon: object, *others: object) -> Iterator[Hooks]:
    """`addon` loaded into mitmproxy's test context (with `others`, if it needs them)."""
    with taddons.context(*others, addon) as tctx:
        yield Hooks(tctx, addon)


def stream(tee: Callable[[bytes], bytes], *chunks: bytes) -> bytes:
    """Pass `chunks` through a stream callable as mitmproxy does, then its end (b"")."""
    out = b"".join(tee(c) for c in chunks)
    return out + tee(b"")
