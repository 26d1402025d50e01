"""Write tcpdump's pcap stream into rotated files: `python -m agentlog.capture.rotator`.

tcpdump's own rotation appends a counter after ".pcap"; this names each file
capture_YYYYMMDD_HHMMSS.pcap (UTC, from its first packet; the first file from
the start of the stream, so it is named before any packet) and, because it
sees every packet, also reports which file holds the SYN of each TCP
connection. It runs as its own process, beside tcpdump, so that none of this
work competes with the proxy's event loop.

Reports on stdout, one line each:
    open NAME FIRST_TS        a file was started
    syn IP:PORT NAME          a connection from IP:PORT began in NAME
    eof PACKETS               input ended; every file is closed
"""

import argparse
import os
import sys
import time
from pathlib import Path

from agentlog.capture.pcapfile import GLOBAL_HEADER_LEN, RECORD_HEADER_LEN, Format, PcapError
from agentlog.logsdir import LogsDir

FILE_MODE = 0o640
_READ = 1 << 20


class Rotator:
    def __init__(self, directory: Path, max_bytes: int, max_seconds: float, report) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.report = report
        self.fmt: Format | None = None
        self.fd: int | None = None
        self.name = ""
        self.size = 0
        self.started = 0.0
        self.packets = 0
        self.taken = {p.name for p in LogsDir(directory).capture_files()}

    def _open(self, ts: float) -> None:
        self.close()
        self.name = LogsDir.capture_name(ts, self.taken)
        self.taken.add(self.name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        self.fd = os.open(self.directory / self.name, flags, FILE_MODE)
        assert self.fmt is not None
        os.write(self.fd, self.fmt.header)
        self.size, self.started = GLOBAL_HEADER_LEN, ts
        self.report(f"open {self.name} {ts:.6f}")

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _needs_new_file(self, ts: float, length: int) -> bool:
        if self.fd is None or ts - self.started >= self.max_seconds:
            return True
        # A packet bigger than the limit still gets a file: never split or drop one.
        return self.size > GLOBAL_HEADER_LEN and self.size + length > self.max_bytes

    def feed(self, buf: bytearray) -> int:
        """Write every complete record in `buf`; return how many bytes were used.

        Called for every read from tcpdump, so it stays lean: records between
        two file boundaries go out in one write, straight from `buf`."""
        offset = 0
        if self.fmt is None:
            if len(buf) < GLOBAL_HEADER_LEN:
                return 0
            self.fmt = Format.parse(bytes(buf[:GLOBAL_HEADER_LEN]))
            offset = GLOBAL_HEADER_LEN
            # The first file opens with the stream, not with its first packet, so a
            # connection's file is known the moment the proxy starts serving.
            self._open(time.time())
        fmt, unpack, n = self.fmt, self.fmt.record_header.unpack_from, len(buf)
        start = offset
        while n - offset >= RECORD_HEADER_LEN:
            sec, frac, caplen, _ = unpack(buf, offset)
            end = offset + RECORD_HEADER_LEN + caplen
            if end > n:
                break
            ts = sec + frac * fmt.tick
            if self._needs_new_file(ts, end - offset):
                self._write(buf, start, offset)
                start = offset
                self._open(ts)
            self.size += end - offset
            self.packets += 1
            source = fmt.tcp_syn_source(buf, offset + RECORD_HEADER_LEN, end)
            if source is not None:
                self.report(f"syn {source} {self.name}")
            offset = end
        self._write(buf, start, offset)
        return offset

    def _write(self, buf: bytearray, start: int, end: int) -> None:
        if end > start and self.fd is not None:
            with memoryview(buf) as view:
                os.write(self.fd, view[start:end])

    def run(self, fd: int) -> None:
        buf = bytearray()
        while chunk := os.read(fd, _READ):
            buf += chunk
            used = self.feed(buf)
            del buf[:used]
        self.close()
        self.report(f"eof {self.packets}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--max-bytes", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, required=True)
    args = parser.parse_args()

    def report(line: str) -> None:
        print(line, flush=True)

    try:
        Rotator(args.directory, args.max_bytes, args.max_seconds, report).run(sys.stdin.fileno())
    except PcapError as e:
        print(f"agentlog capture: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
