"""Running the real `agentlog proxy` as a subprocess, and reading what it wrote."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

_READY = re.compile(r"listening on ([0-9.]+|\[[0-9a-f:]+\]):(\d+) \(regular\)")


def agentlog(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the real CLI, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "agentlog", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def curl(proxy: RunningProxy, url: str, *args: str, trust_ca: bool = True):
    """The real curl through the proxy, trusting agentlog's CA as an agent would."""
    cmd = ["curl", "-sS", "--max-time", "20", "-x", proxy.url]
    if trust_ca:
        cmd += ["--cacert", str(proxy.ca)]
    return subprocess.run([*cmd, *args, url], capture_output=True, timeout=30, check=False)


def closed(kind: str):
    """A wait_for predicate: some event of this kind was written."""
    return lambda events: any(e["event"] == kind for e in events)


def fill(directory: Path) -> Path:
    """Fill the file system holding `directory`; returns the filler file to delete."""
    filler = directory / "filler"
    # Unbuffered: a buffered file keeps what a short write left over and fails at close.
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def verify(logs: Path) -> subprocess.CompletedProcess:
    return agentlog("verify", "--logs", logs)


@dataclass
class RunningProxy:
    logs: Path
    proc: subprocess.Popen
    host: str = "127.0.0.1"
    port: int = 0
    stderr: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ca(self) -> Path:
        return self.logs / "ca.crt"

    def events(self, kind: str | None = None) -> list[dict]:
        lines = (self.logs / "requests.jsonl").read_bytes().splitlines()
        events = [json.loads(line) for line in lines]
        return [e for e in events if kind is None or e["event"] == kind]

    def exchange(self, path_prefix: str, domain: str | None = None) -> list[dict]:
        """The events of the one request to `path_prefix`, in journal order."""
        requests = [
            e
            for e in self.events("request")
            if e["path"].startswith(path_prefix) and (domain is None or e["domain"] == domain)
        ]
        assert len(requests) == 1, f"{len(requests)} request events for {path_prefix}"
        return [e for e in self.events() if e["id"] == requests[0]["id"]]

    def wait_for(self, predicate, timeout: float = 10.0) -> list[dict]:
        """Events, once `predicate(events)` holds (closing events follow the client's read);
        fails the test if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if predicate(events):
                return events
            if time.monotonic() > deadline:
                kinds = [e["event"] for e in events]
                raise AssertionError(f"journal never matched within {timeout} s: {kinds}")
            time.sleep(0.05)

    def wait_said(self, text: str, timeout: float = 10.0) -> None:
        """Wait until the proxy's stderr (read by a thread, so late) has a line with `text`."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.stderr):
            if time.monotonic() > deadline:
                raise AssertionError(f"the proxy never said {text!r}: {''.join(self.stderr)}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(15)


def start_proxy(
    logs: Path, *args: str, listen: str = "127.0.0.1:0", timeout: float = 30.0
) -> RunningProxy:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentlog",
            "proxy",
            "--logs",
            str(logs),
            "--listen",
            listen,
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    proxy = RunningProxy(logs, proc)
    ready = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            proxy.stderr.append(line)
            if (m := _READY.search(line)) and not ready.is_set():
                proxy.host, proxy.port = m.group(1), int(m.group(2))
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("proxy did not start: " + "".join(proxy.stderr))
    return proxy
