"""Running the real `agentlog ui` as a subprocess, and talking to it with httpx."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from agentlog.ui import query

_URL = re.compile(r"agentlog ui: (http://(\S+?):(\d+)/\?token=(\S+))")


@dataclass
class RunningUI:
    logs: Path
    proc: subprocess.Popen
    url: str = ""
    host: str = ""
    port: int = 0
    token: str = ""
    stderr: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, *, auth: bool = True, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **params) -> httpx.Response:
        with self.client() as c:
            return c.get(path, params=params)

    def status(self) -> dict:
        return self.get("/api/status").json()

    def wait_indexed(self, seq: int, timeout: float = 60) -> dict:
        """The status once the index has read up to `seq`."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status["indexed_seq"] >= seq:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"index stuck at {status} (wanted seq {seq})")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(15)


def start_ui(logs: Path, *args: str, timeout: float = 30.0) -> RunningUI:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentlog",
            "ui",
            "--logs",
            str(logs),
            "--listen",
            "127.0.0.1:0",
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    ui = RunningUI(logs, proc)
    ready = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            ui.stderr.append(line)
            if (m := _URL.search(line)) and not ready.is_set():
                ui.url, ui.host, ui.port, ui.token = (
                    m.group(1),
                    m.group(2),
                    int(m.group(3)),
                    m.group(4),
                )
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("ui did not start: " + "".join(ui.stderr))
    return ui


def last_seq(logs: Path) -> int:
    """The seq of the journal's last whole line."""
    import json

    lines = (logs / "requests.jsonl").read_bytes().splitlines()
    return json.loads(lines[-1])["seq"] if lines else 0


def index_contents(db_path: Path, terms: list[str]) -> dict:
    """Everything a reader can see in an index: its schema (indexes included), rows,
    events, meta, and which rows each search term finds."""
    db = sqlite3.connect(db_path)
    try:
        return {
            "schema": db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY 2").fetchall(),
            "exchanges": db.execute("SELECT * FROM exchanges ORDER BY seq").fetchall(),
            "events": db.execute("SELECT * FROM events ORDER BY seq").fetchall(),
            "meta": sorted(db.execute("SELECT * FROM meta").fetchall()),
            "search": {
                t: db.execute(
                    "SELECT rowid FROM search WHERE search MATCH ? ORDER BY rowid",
                    (query.fts_query(t),),
                ).fetchall()
                for t in terms
            },
        }
    finally:
        db.close()
