"""The web UI as a person reaches it: a real `agentlog ui` process, and Debian's
chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_URL = re.compile(r"(http://[^\s/]+)/\?token=([A-Za-z0-9_\-]+)")


def have_browser() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return os.access(CHROMIUM, os.X_OK)


@dataclass
class RunningUI:
    logs: Path
    proc: subprocess.Popen
    base: str = ""  # http://127.0.0.1:PORT
    token: str = ""
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """What `agentlog ui` prints: the page, with the token to sign in once."""
        return f"{self.base}/?token={self.token}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def start_ui(logs: Path, timeout: float = 30.0) -> RunningUI:
    """`agentlog ui --logs LOGS` on a free loopback port, once it printed its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentlog",
            "ui",
            "--logs",
            str(logs),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    ui = RunningUI(logs, proc)
    ready = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            ui.output.append(line)
            if (m := _URL.search(line)) and not ready.is_set():
                ui.base, ui.token = m.group(1), m.group(2)
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("agentlog ui did not start: " + "".join(ui.output))
    return ui
