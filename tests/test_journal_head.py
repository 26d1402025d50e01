"""The chain head (seq, HMAC) the proxy prints, read while the writer thread writes.

The head was once two fields set one after the other, so a reader could pair one
line's seq with another's HMAC. With the GIL that window has no switch point and
this test cannot force it; it pins the contract for a free-threaded build.
"""

from __future__ import annotations

import asyncio
import sys
import threading

from agentlog.journal import chain
from agentlog.journal.writer import JournalWriter
from agentlog.logsdir import LogsDir
from agentlog.redact import Redactor

KEY = b"h" * 32


def test_head_read_from_another_thread_always_names_one_line(tmp_path):
    logs = LogsDir(tmp_path)
    logs.prepare()
    writer = JournalWriter(logs, KEY, Redactor())
    writer.start()
    samples: set[tuple[int, str]] = set()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.add(writer.head)

    async def write() -> None:
        for i in range(1500):  # one batch, one head update each
            await writer.write_ahead({"event": "request", "id": str(i)})

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # as many thread switches as the interpreter allows
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        asyncio.run(write())
    finally:
        done.set()
        sampler.join()
        sys.setswitchinterval(switch)
        writer.close()

    lines = logs.journal.read_bytes().splitlines(keepends=True)
    macs = {0: chain.digest(KEY, b"")} | {
        seq: chain.digest(KEY, line) for seq, line in enumerate(lines, 1)
    }
    assert len(samples) > 10
    assert all(macs[seq] == mac for seq, mac in samples)
    assert writer.head == (1500, macs[1500])
