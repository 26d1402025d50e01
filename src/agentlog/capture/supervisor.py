"""Run tcpdump on the agent's interface, keep it running, and know which file holds what.

tcpdump writes one pcap stream to a pipe; the rotator process cuts it into
capture_*.pcap files and reports each file it opens and each TCP connection
it sees begin. If tcpdump dies it is started again and the gap is recorded.
"""

import asyncio
import bisect
import contextlib
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable

from agentlog.config import CaptureSettings
from agentlog.errors import UserError
from agentlog.logsdir import LogsDir
from agentlog.timefmt import rfc3339

_STATS = re.compile(r"(\d+) packets? (captured|received by filter|dropped by kernel)")
_SYN_MEMORY = 200_000  # connections remembered for pcap_file lookups


def _batch_scheduling() -> None:
    """tcpdump and the rotator wake for every packet; as batch work they no longer
    preempt the proxy's event loop on its CPU (measured: bench/bench_capture.py)."""
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


class CaptureError(UserError):
    """Capture cannot run; the message is one line for the user."""


def _normalize(address: str) -> str:
    return address.replace("[::ffff:", "").replace("]:", ":") if "::ffff:" in address else address


class _Pair:
    """One tcpdump and the rotator reading from it."""

    def __init__(
        self, tcpdump: asyncio.subprocess.Process, rotator: asyncio.subprocess.Process
    ) -> None:
        self.tcpdump = tcpdump
        self.rotator = rotator
        self.stderr: list[str] = []

    def stats(self) -> dict[str, int]:
        found = {}
        for line in self.stderr:
            if m := _STATS.search(line):
                found[m.group(2).replace(" ", "_")] = int(m.group(1))
        return found


class CaptureSupervisor:
    def __init__(
        self, logs: LogsDir, settings: CaptureSettings, record: Callable[..., None]
    ) -> None:
        self.logs = logs
        self.settings = settings
        self.record = record  # record(action, **fields): a `capture` journal event
        self._pair: _Pair | None = None
        self._starts: list[float] = []
        self._names: list[str] = []
        self._syn_files: dict[str, str] = {}
        self._stopping = False
        self._watcher: asyncio.Task | None = None
        self._first_file = asyncio.Event()

    # -- lookups (called on the proxy's hot path: memory only) -------------

    @property
    def current_file(self) -> str | None:
        return self._names[-1] if self._names else None

    def file_for(self, client: str | None, ts: float) -> str | None:
        """The file holding the start of the connection from `client`, begun at `ts`."""
        if client and (name := self._syn_files.get(_normalize(client))):
            return name
        i = bisect.bisect_right(self._starts, ts) - 1
        return self._names[max(i, 0)] if self._names else None

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        if shutil.which("tcpdump") is None:
            raise CaptureError("--capture needs tcpdump, and it is not on PATH")
        self._pair = await self._spawn()
        try:  # serve only once the first file is named: every record can name its file
            await asyncio.wait_for(self._first_file.wait(), 10)
        except TimeoutError:
            raise CaptureError("the capture rotator did not open a file within 10 s") from None
        self.record("start", interface=self.settings.interface, pid=self._pair.tcpdump.pid)
        self._watcher = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
        pair = self._pair
        if pair is None:
            return
        if pair.tcpdump.returncode is None:
            pair.tcpdump.send_signal(signal.SIGTERM)
        await pair.tcpdump.wait()
        await pair.rotator.wait()  # drains the pipe, closes the last file
        await asyncio.sleep(0)  # let the report readers finish
        self.record("stop", reason="proxy stopped", file=self.current_file, **pair.stats())

    async def _spawn(self) -> _Pair:
        read_end, write_end = os.pipe()
        try:
            tcpdump = await asyncio.create_subprocess_exec(
                "tcpdump",
                "-i",
                self.settings.interface,
                "-n",
                "-s",
                "0",
                "-U",
                "--immediate-mode",
                "-B",
                "32768",
                "-w",
                "-",
                stdout=write_end,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_batch_scheduling,
            )
            rotator = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "agentlog.capture.rotator",
                str(self.logs.root),
                "--max-bytes",
                str(self.settings.max_bytes),
                "--max-seconds",
                str(self.settings.max_seconds),
                stdin=read_end,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_batch_scheduling,
            )
        finally:
            os.close(read_end)
            os.close(write_end)
        pair = _Pair(tcpdump, rotator)
        asyncio.create_task(self._read_reports(rotator))
        await self._await_listening(pair)
        return pair

    async def _await_listening(self, pair: _Pair) -> None:
        assert pair.tcpdump.stderr is not None
        while True:
            try:
                line = await asyncio.wait_for(pair.tcpdump.stderr.readline(), 10)
            except TimeoutError:
                raise CaptureError("tcpdump did not start listening within 10 s") from None
            text = line.decode(errors="replace").strip()
            if not line:  # tcpdump exited: its last words say why
                await pair.tcpdump.wait()
                await pair.rotator.wait()
                why = pair.stderr[-1] if pair.stderr else f"exit status {pair.tcpdump.returncode}"
                raise CaptureError(f"tcpdump on {self.settings.interface} failed: {why}")
            pair.stderr.append(text.removeprefix("tcpdump: "))
            if "listening on" in text:
                asyncio.create_task(self._collect_stderr(pair))
                return

    async def _collect_stderr(self, pair: _Pair) -> None:
        assert pair.tcpdump.stderr is not None
        async for line in pair.tcpdump.stderr:
            pair.stderr.append(line.decode(errors="replace").strip())

    async def _read_reports(self, rotator: asyncio.subprocess.Process) -> None:
        assert rotator.stdout is not None
        async for raw in rotator.stdout:
            kind, _, rest = raw.decode().strip().partition(" ")
            if kind == "open":
                name, ts = rest.rsplit(" ", 1)
                self._starts.append(float(ts))
                self._names.append(name)
                self._first_file.set()
                self.record("open", file=name)
            elif kind == "syn":
                client, name = rest.split(" ", 1)
                if len(self._syn_files) >= _SYN_MEMORY:
                    for key in list(self._syn_files)[: _SYN_MEMORY // 2]:
                        del self._syn_files[key]
                self._syn_files[client] = name

    async def _watch(self) -> None:
        """Restart tcpdump whenever it dies; record the gap."""
        delay = 0.1
        while not self._stopping:
            assert self._pair is not None
            pair = self._pair
            await pair.tcpdump.wait()
            await pair.rotator.wait()
            if self._stopping:
                return
            died_at = time.time()
            self.record(
                "stop",
                reason=f"tcpdump exited with status {pair.tcpdump.returncode}",
                file=self.current_file,
                **pair.stats(),
            )
            while not self._stopping:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                try:
                    self._pair = await self._spawn()
                    break
                except CaptureError as e:
                    print(f"agentlog proxy: capture restart failed: {e}", file=sys.stderr)
            else:
                return
            # The file after the gap is announced by its own "open" event.
            self.record(
                "restart",
                interface=self.settings.interface,
                pid=self._pair.tcpdump.pid,
                gap_started=rfc3339(died_at),
                gap_ended=rfc3339(time.time()),
            )
            delay = 0.1
